"""The C sources of decodekit's native kernels (built by models/native_build.py)."""
