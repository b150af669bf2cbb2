// Check Kubernetes manifests (one JSON object per line on stdin) against the published schemas of their kinds;
// prints one result per manifest as JSON. Run by tests/k8s/test_gateway_manifests.py after `npm ci` in a cache.
import { createInterface } from "node:readline";
const modules = {
  "gateway.networking.k8s.io/v1": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1",
  "gateway.envoyproxy.io/v1alpha1": "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1",
};
const out = [];
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const m = JSON.parse(line);
  const base = modules[m.apiVersion];
  if (!base) { out.push({ kind: m.kind, name: m.metadata?.name, error: `no schema package for ${m.apiVersion}` }); continue; }
  try {
    const mod = await import(`${base}/${m.kind}`);
    new mod[m.kind](m).validate();
    out.push({ kind: m.kind, name: m.metadata.name, error: null });
  } catch (e) {
    out.push({ kind: m.kind, name: m.metadata?.name, error: String(e.message || e) });
  }
}
console.log(JSON.stringify(out));
