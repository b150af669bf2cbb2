from vllm_fleet.cli import app

app(prog_name="vllm-fleet")
