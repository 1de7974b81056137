"""The codec at run time: encode and decode end to end, on an exported model, without torch.

- `codec`: encode_image / decode_task (and the plain encode / decode), task and quality parsing,
  the size check, a task decoder's prediction and its raw output;
- `layer_codec`: one group's layer, coded and decoded by the same steps;
- `search`: the encoder's choice of a layer's symbols beyond rounding (`--effort`);
- `picture`: a picture layer (the picture coded by AVIF through Pillow; its tasks are the picture and
  CONTRACT.md's filters of it), and the down- and up-scaling the bench's variants share;
- `model`: an exported model folder (manifest, ONNX graphs, entropy tables) and where models are found;
- `manifest`: reading and checking a model's manifest.json;
- `images`: reading a picture file the codec's way; `units`: outputs in CONTRACT.md's raw units;
- `resample`: pictures and latents between scales, identically on both sides.

Only numpy, Pillow, onnxruntime and the stdlib coders are imported here; tests/test_runtime_imports.py
keeps torch, training, data generation and benchmarking out.
"""
from .codec import (DecodeResult, EncodeResult, check_file_model, check_image_size, check_quality, decode,
                    decode_task, default_threads, encode, encode_image, file_padded_size, load_model, pad_picture,
                    padded_size, parse_tasks, raw_output, task_prediction)
from .model import RuntimeModel, find_model

__all__ = ["DecodeResult", "EncodeResult", "RuntimeModel", "check_file_model", "check_image_size", "check_quality",
           "decode", "decode_task", "default_threads", "encode", "encode_image", "file_padded_size", "find_model",
           "load_model", "pad_picture", "padded_size", "parse_tasks", "raw_output", "task_prediction"]
