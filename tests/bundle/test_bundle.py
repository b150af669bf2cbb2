"""`vllm-fleet bundle`: one signed tar of what a fleet needs, refused before anything is installed when a byte, an
item, a need or the signature is wrong, or when a second tar reader could read it otherwise.

Real GnuPG (a key made per test module in a GnuPG home of its own), real tar files, the real plan of an inventory
and real file:// weights; the collection is built by ansible-galaxy. The controller's wheels and the images are
stand-ins here (a few bytes each: pip and `docker save` of the real ones are a world's cost), made by the same
`Staged` path as the real makers.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vllm_fleet.sandbox.inventory import write_inventory
from vllm_fleet.sandbox.signing import forget, signing_key
from vllm_fleet.vm.planning.bundle import ITEMS, MANIFEST, SIGNATURE, BundleError, Need, fleet_needs
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.inventory import check_inventory
from vllm_fleet.vm.running import bundle as bundles
from vllm_fleet.vm.running.bundle import Staged, create, verify

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def gpg() -> Iterator[tuple[Path, str, Path]]:
    """(GnuPG home, the signing key's fingerprint, its public key file). The home's path is short: gpg-agent's
    socket lives in it."""
    home = Path(tempfile.mkdtemp(prefix="vfg"))
    fingerprint, public = signing_key(home, "vllm-fleet bundle test <bundle@example.invalid>")
    yield home, fingerprint, public
    forget(home)
    shutil.rmtree(home, ignore_errors=True)


def fleet(tmp_path: Path, services: list[dict[str, Any]]) -> FleetPlan:
    inv = write_inventory(tmp_path / f"hosts-{len(services)}.yml", {"h1": {"ansible_host": "10.0.0.1"}},
                          {"services": [{"port": 8000 + n, **svc} for n, svc in enumerate(services)]})
    return check_inventory(inv, secrets=False)


def model_dir(root: Path, name: str, weights: bytes) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "name": name}))
    (d / "model.safetensors").write_bytes(weights)
    return d


def service(name: str, uri: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "storage_uri": uri, "accelerator": "cpu", "gpus": 0, **more}


def stand_in(kind: str, name: str, body: bytes) -> Any:
    """A maker of one small item of `kind` (the wheels' and the images' stand-ins)."""

    def make(*args: Any) -> Any:
        work = next(a for a in args if isinstance(a, Path) and a.is_dir())
        need = next((a for a in args if isinstance(a, Need)), None)
        f = work / f"{kind}-{name}"
        f.write_bytes(body)
        identity = f"{need.identity}#sha256:{name}" if need else name
        staged = bundles._item(kind, identity, f"{kind}s/{name}", f, "stand-in",  # type: ignore[arg-type]
                               list(need.needed_by) if need else ["vllm-fleet[vm]"])
        return staged if need else [staged]

    return make


def stand_in_debs(packages: dict[str, list[str]], work: Path, _log: Any) -> list[Staged]:
    out = []
    for name, stages in packages.items():
        f = work / f"{name}_1.0_amd64.deb"
        f.write_bytes(b"!<arch> stand-in " + name.encode())
        out.append(bundles._item("deb", f.name, f"debs/{f.name}", f, "stand-in", stages))
    return out


STAND_INS = {"wheels": stand_in("wheel", "vllm_fleet-0.1.0-py3-none-any.whl", b"PK wheel stand-in"),
             "image": stand_in("image", "img", b"image archive stand-in"), "debs": stand_in_debs}


def make(plan: FleetPlan, out: Path, gpg: tuple[Path, str, Path], **kwargs: Any) -> list[Staged]:
    home, key, _ = gpg
    _, staged = create(plan, out, key=key, gnupg_home=home, log=lambda _: None, makers=STAND_INS, **kwargs)
    return staged


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, gpg: tuple[Path, str, Path]) -> tuple[Path, FleetPlan, Path]:
    """(a bundle of a two-service fleet, its plan, the models' root)."""
    root = tmp_path_factory.mktemp("bundle")
    models = root / "models"
    plan = fleet(root, [service("chat", f"file://{model_dir(models, 'chat', b'w' * 4096)}"),
                        service("embed", f"file://{model_dir(models, 'embed', b'e' * 2048)}", task="embed")])
    out = root / "fleet.bundle"
    make(plan, out, gpg)
    return out, plan, models


def rewrite(src: Path, dst: Path, change: Any) -> Path:
    """A copy of the tar at `src` whose members pass through `change(info, data) -> [(info, data), ...]`."""
    with tarfile.open(src, "r:") as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin:
            f = tin.extractfile(m)
            for info, data in change(m, f.read() if f else b""):
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
    return dst


def refused(bundle: Path, key: Path, **kwargs: Any) -> str:
    with pytest.raises(BundleError) as caught:
        verify(bundle, key, **kwargs)
    return str(caught.value)


def test_a_bundle_of_a_fleet_verifies_against_its_key_and_holds_every_item_its_plan_needs(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path]) -> None:
    bundle, plan, _ = made
    manifest = verify(bundle, gpg[2], plan=plan)
    kinds = sorted({i.kind for i in manifest.items})
    assert kinds == ["collection", "deb", "image", "weights", "wheel"]
    debs = {i.identity.split("_", 1)[0]: i.needed_by for i in manifest.items if i.kind == "deb"}
    # A fleet without a gateway or monitoring block installs neither's packages.
    assert debs == {"docker.io": ["prepare (docker)"], "docker-compose": ["prepare (docker)"],
                    "nftables": ["firewall"], "python3-venv": ["weights"], "python3-requests": ["serve"]}
    needs = {(n.kind, n.identity) for n in fleet_needs(plan)}
    assert {(i.kind, i.identity.split("#", 1)[0]) for i in manifest.items if i.kind in ("image", "weights")} == needs
    weights = {i.identity.rsplit("#", 1)[1] for i in manifest.items if i.kind == "weights"}
    assert weights == {"config.json", "model.safetensors"}
    (collection,) = [i for i in manifest.items if i.kind == "collection"]
    assert collection.identity.startswith("vllmfleet-fleet-") and "#files:" in collection.identity
    assert collection.size > 10_000
    with tarfile.open(bundle) as tf:
        names = tf.getnames()
    assert names[:2] == [MANIFEST, SIGNATURE] and sorted(names[2:]) == sorted(i.path for i in manifest.items)


@pytest.mark.parametrize("kind", ["collection", "wheel", "image", "weights", "deb"])
def test_one_changed_byte_in_any_item_is_refused_naming_that_item(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path, kind: str) -> None:
    bundle, _, _ = made
    target = next(i for i in verify(bundle, gpg[2]).items if i.kind == kind)

    def flip(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if info.name == target.path:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return [(info, data)]

    message = refused(rewrite(bundle, tmp_path / "tampered.bundle", flip), gpg[2])
    assert f"{target.path} ({kind} {target.identity}) does not match the manifest" in message
    assert message.count("\n  - ") == 1


def test_a_missing_item_is_refused_naming_it(made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path],
                                             tmp_path: Path) -> None:
    bundle, _, _ = made
    target = next(i for i in verify(bundle, gpg[2]).items if i.identity.endswith("#model.safetensors"))
    short = rewrite(bundle, tmp_path / "short.bundle", lambda i, d: [] if i.name == target.path else [(i, d)])
    assert f"{target.path} (weights {target.identity}) is missing from the bundle" in refused(short, gpg[2])


def test_a_bundle_lacking_a_model_the_spec_needs_is_refused_naming_the_model_and_its_service(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    bundle, _, models = made
    more = fleet(tmp_path, [service("chat", f"file://{models / 'chat'}"),
                            service("embed", f"file://{models / 'embed'}", task="embed"),
                            service("rerank", f"file://{model_dir(tmp_path, 'rerank', b'r')}", task="score")])
    message = refused(bundle, gpg[2], plan=more)
    assert f"the bundle lacks weights file://{tmp_path / 'rerank'} (needed by services.rerank)" in message
    assert "chat" not in message


def test_a_bundle_lacking_the_packages_of_a_gateway_the_spec_adds_is_refused_naming_each_package_and_stage(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    bundle, _, models = made
    inv = write_inventory(tmp_path / "gw.yml", {"h1": {"ansible_host": "10.0.0.1"}}, {"services": [
        {"port": 8000, **service("chat", f"file://{models / 'chat'}", api_key={"env": "CHAT_KEY"})},
        {"port": 8001, **service("embed", f"file://{models / 'embed'}", task="embed", api_key={"env": "EMBED_KEY"})}],
        "gateway": {"port": 8443, "clients": [{"name": "app", "key": {"env": "APP_KEY"}, "models": ["*"]}]}},
        gateways={"h1": None})
    message = refused(bundle, gpg[2], plan=check_inventory(inv, secrets=False))
    assert "the bundle lacks the package haproxy (installed by gateway)" in message
    assert "the bundle lacks the package lua-cjson (installed by gateway)" in message
    assert "keepalived" not in message  # one gateway host: no high availability


def test_a_manifest_changed_after_signing_or_signed_by_another_key_is_refused(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    bundle, _, _ = made

    def grow(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        return [(info, data.replace(b'"size": 4096', b'"size": 4097') if info.name == MANIFEST else data)]

    changed = rewrite(bundle, tmp_path / "changed.bundle", grow)
    assert f"{MANIFEST}'s signature does not verify against {gpg[2]}" in refused(changed, gpg[2])
    home = Path(tempfile.mkdtemp(prefix="vfo"))
    try:
        other = shutil.copy(signing_key(home, "someone else <else@example.invalid>")[1], tmp_path / "other.asc")
    finally:
        forget(home)
        shutil.rmtree(home, ignore_errors=True)
    assert f"{MANIFEST}'s signature does not verify against {other}" in refused(bundle, other)


def _extra(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> Any:
    def add(info: tarfile.TarInfo, body: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        out = [(info, body)]
        if info.name == SIGNATURE:
            extra = tarfile.TarInfo(name)
            extra.type, extra.linkname = kind, link
            out.append((extra, data if kind == tarfile.REGTYPE else b""))
        return out

    return add


def test_second_reader_tricks_in_the_tar_are_refused(made: tuple[Path, FleetPlan, Path],
                                                    gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    bundle, _, _ = made
    item = next(i for i in verify(bundle, gpg[2]).items if i.identity.endswith("#config.json"))

    def twice(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        # The listed bytes first, then other bytes under the same name: `tar x` keeps the last one.
        return [(info, data), (info, b'{"model_type": "evil"}')] if info.name == item.path else [(info, data)]

    cases = {
        "twice": (twice, f"{item.path} is in the bundle twice"),
        "traversal": (_extra(f"{ITEMS}../../etc/cron.d/x"), "is outside items/ or has an unsafe path"),
        "absolute": (_extra("/etc/passwd"), "'/etc/passwd' is outside items/"),
        "unlisted": (_extra(f"{ITEMS}weights/extra.bin"), f"{ITEMS}weights/extra.bin is not in the manifest"),
        "symlink": (_extra(f"{ITEMS}weights/link", kind=tarfile.SYMTYPE, link="/etc/shadow"),
                    f"{ITEMS}weights/link is not in the manifest"),
        "manifest twice": (_extra(MANIFEST, b"{}"), f"{MANIFEST} is in the bundle 2 times"),
    }
    for name, (change, expected) in cases.items():
        message = refused(rewrite(bundle, tmp_path / f"{name}.bundle", change), gpg[2])
        assert expected in message, (name, message)


def test_a_listed_item_that_is_a_link_is_refused(made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path],
                                                tmp_path: Path) -> None:
    bundle, _, _ = made
    item = next(i for i in verify(bundle, gpg[2]).items if i.identity.endswith("#config.json"))

    def link(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if info.name == item.path:
            info = tarfile.TarInfo(info.name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            return [(info, b"")]
        return [(info, data)]

    assert f"{item.path} is not a regular file" in refused(rewrite(bundle, tmp_path / "l.bundle", link), gpg[2])


def test_a_signed_manifest_with_a_key_twice_is_refused(gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    """A second JSON reader could take the other `items`: the manifest's reader refuses duplicate keys even under a
    good signature."""
    home, key, public = gpg
    body = b'{"format": 1, "created": "x", "fleet_digest": "d", "items": [], "items": []}'
    (tmp_path / MANIFEST).write_bytes(body)
    sig = bundles.sign(tmp_path / MANIFEST, key, home)
    out = tmp_path / "dup.bundle"
    with tarfile.open(out, "w") as tf:
        tf.add(tmp_path / MANIFEST, MANIFEST)
        tf.add(sig, SIGNATURE)
    assert f"{MANIFEST} has the key 'items' twice" in refused(out, public)


def test_an_unpinned_hub_revision_is_refused_naming_the_field_and_the_fix_before_anything_is_made(
        gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    plan = fleet(tmp_path, [service("chat", "hf://org/chat", revision="main"),
                            service("pinned", "hf://org/pinned", revision=COMMIT)])

    def never(*_: Any) -> Any:
        raise AssertionError("an item was made")

    with pytest.raises(BundleError) as caught:
        create(plan, tmp_path / "x.bundle", key=gpg[1], gnupg_home=gpg[0], log=lambda _: None,
               makers={"collection": never, "wheels": never, "image": never, "weights": never})
    message = str(caught.value)
    assert "services.chat.revision: 'main' is not a pinned commit" in message
    assert "fix: give the 40-hex commit id" in message and "pinned" not in message.replace("not a pinned", "")
    assert not (tmp_path / "x.bundle").exists() and not (tmp_path / "x.bundle.part").exists()


def test_since_writes_only_the_changed_item_and_verifies_with_its_base(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    bundle, _, models = made
    base = tmp_path / bundle.name
    shutil.copy(bundle, base)
    models2 = tmp_path / "models"
    shutil.copytree(models, models2)
    plan = fleet(tmp_path, [service("chat", f"file://{models / 'chat'}"),
                            service("embed", f"file://{models / 'embed'}", task="embed")])
    (models / "chat" / "config.json").write_text(json.dumps({"model_type": "llama", "changed": True}))
    try:
        out = tmp_path / "delta.bundle"
        staged = make(plan, out, gpg, since=base, since_key=gpg[2])
    finally:
        shutil.rmtree(models)
        shutil.copytree(models2, models)
    written = [s.item for s in staged if s.file is not None]
    # Only the changed file is written: the collection is built again, and its files are the same.
    assert [(i.kind, i.identity.rsplit("#", 1)[1]) for i in written] == [("weights", "config.json")]
    manifest = verify(out, gpg[2], plan=plan)
    assert manifest.since is not None and manifest.since.file == base.name
    assert len(manifest.items) == len(verify(base, gpg[2]).items)
    print(f"bundle since: full {base.stat().st_size} bytes, delta {out.stat().st_size} bytes, "
          f"{len(written)} of {len(manifest.items)} items written")
    assert out.stat().st_size < base.stat().st_size
    base.rename(tmp_path / "elsewhere.bundle")
    assert f"the bundle was written since {base.name}, which is not at {base}" in refused(out, gpg[2])
    rewrite(tmp_path / "elsewhere.bundle", base, lambda i, d: [(i, d[:-1] + b"!" if i.name.endswith(
        "model.safetensors") and "chat" in i.name else d)])
    assert f"in {base.name}: " in refused(out, gpg[2]) and "does not match the manifest" in refused(out, gpg[2])


def test_since_trusts_no_base_its_signer_did_not_sign(made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path],
                                                      tmp_path: Path) -> None:
    """A base whose manifest was changed (its items' hashes would be copied into the new, signed manifest) is
    refused, with no --since-key given: the base is checked against the signer's own public key."""
    bundle, plan, _ = made

    def grow(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        return [(info, data.replace(b'"size": 4096', b'"size": 4097') if info.name == MANIFEST else data)]

    forged = rewrite(bundle, tmp_path / "forged.bundle", grow)
    with pytest.raises(BundleError) as caught:
        make(plan, tmp_path / "delta.bundle", gpg, since=forged)
    assert f"{MANIFEST}'s signature does not verify" in str(caught.value)
    assert not (tmp_path / "delta.bundle").exists()
    make(plan, tmp_path / "ok.bundle", gpg, since=bundle)  # the genuine base passes without --since-key


def test_the_cli_verifies_a_bundle_and_refuses_a_tampered_one_with_exit_code_2_naming_the_item(
        made: tuple[Path, FleetPlan, Path], gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vllm_fleet.cli import app

    bundle, _, models = made
    inv = write_inventory(tmp_path / "hosts.yml", {"h1": {"ansible_host": "10.0.0.1"}}, {"services": [
        {"port": 8000, **service("chat", f"file://{models / 'chat'}")},
        {"port": 8001, **service("embed", f"file://{models / 'embed'}", task="embed")}]})
    ok = CliRunner().invoke(app, ["bundle", "verify", str(bundle), "--key", str(gpg[2]), "-i", str(inv), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    target = next(i for i in verify(bundle, gpg[2]).items if i.kind == "weights")
    tampered = rewrite(bundle, tmp_path / "t.bundle",
                       lambda i, d: [(i, d[:-1] + b"?" if i.name == target.path else d)])
    bad = CliRunner().invoke(app, ["bundle", "verify", str(tampered), "--key", str(gpg[2]), "--json"])
    assert bad.exit_code == 2
    (problem,) = json.loads(bad.stdout)["problems"]
    assert problem.startswith(f"{target.path} (weights {target.identity}) does not match the manifest")


def test_the_cli_refuses_to_bundle_an_unpinned_revision_with_exit_code_2_and_writes_nothing(
        gpg: tuple[Path, str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vllm_fleet.cli import app

    inv = write_inventory(tmp_path / "hosts.yml", {"h1": {"ansible_host": "10.0.0.1"}},
                          {"services": [service("chat", "hf://org/chat")]})
    out = tmp_path / "fleet.bundle"
    res = CliRunner().invoke(app, ["bundle", "create", "-i", str(inv), "-o", str(out), "--sign-key", gpg[1],
                                   "--gnupg-home", str(gpg[0])])
    assert res.exit_code == 2
    assert "services.chat.revision: None is not a pinned commit" in res.output
    assert not out.exists() and not list(tmp_path.glob("fleet.bundle*"))


def test_a_private_hub_model_is_bundled_at_its_commit_with_a_token_that_reaches_no_byte_of_the_bundle(
        gpg: tuple[Path, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.weights.hub import hub_repo_layout
    from tests.weights.origins import make_model, start_nginx

    token = "hf_bundleTokenDoNotLeak7781"
    model = make_model(tmp_path / "src" / "private", weight_bytes=8192, seed=7)
    www = tmp_path / "www"
    hub = start_nginx(tmp_path / "nginx", www, extra=hub_repo_layout(www, "acme/private", model, COMMIT, token=token))
    storage = {"endpoint": hub.url, "credentials": {"hf_token": {"env": "HF_BUNDLE_TOKEN"}}}
    try:
        # The commit in the URI (hf://ORG/REPO:REV, KServe's spelling) as well as in the revision field.
        plan = fleet(tmp_path, [service("chat", "hf://acme/private", revision=COMMIT, storage=storage),
                                service("again", f"hf://acme/private:{COMMIT}", storage=storage)])
        monkeypatch.delenv("HF_BUNDLE_TOKEN", raising=False)
        with pytest.raises(BundleError) as unset:
            make(plan, tmp_path / "no-token.bundle", gpg)
        for name in ("chat", "again"):
            assert f"{name}: its hub token is referenced as {{'env': 'HF_BUNDLE_TOKEN'}}" in str(unset.value)
        assert not (tmp_path / "no-token.bundle").exists()
        monkeypatch.setenv("HF_BUNDLE_TOKEN", token)
        out = tmp_path / "private.bundle"
        make(plan, out, gpg)
    finally:
        hub.stop()
    manifest = verify(out, gpg[2], plan=plan)
    expected = {p.relative_to(model).as_posix(): p for p in model.rglob("*") if p.is_file()}
    for uri, entry in ((f"hf://acme/private@{COMMIT}", "services.chat"),
                       (f"hf://acme/private:{COMMIT}@{COMMIT}", "services.again")):
        weights = {i.identity.rsplit("#", 1)[1]: i for i in manifest.items
                   if i.kind == "weights" and i.identity.startswith(uri + "#")}
        assert set(weights) == set(expected), uri
        for name, item in weights.items():
            assert item.needed_by == [entry]
            assert item.sha256 == hashlib.sha256(expected[name].read_bytes()).hexdigest()
    assert token.encode() not in out.read_bytes()
