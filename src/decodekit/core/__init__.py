"""What every decoding loop shares: the request and the output committer."""

from decodekit.core.output import OutputCommitter
from decodekit.core.request import DecodeRequest

__all__ = ["DecodeRequest", "OutputCommitter"]
