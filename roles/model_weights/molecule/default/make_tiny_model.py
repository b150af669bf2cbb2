"""Write a tiny model tarball: config.json and a safetensors file written per the format."""

import io
import json
import struct
import sys
import tarfile

tensor = bytes(range(256)) * 64
header = json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, len(tensor)]}}).encode()
header += b" " * (-len(header) % 8)
files = {
    "tiny/config.json": json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}).encode(),
    "tiny/model.safetensors": struct.pack("<Q", len(header)) + header + tensor,
}
with tarfile.open(sys.argv[1], "w:gz") as tf:
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
