"""Quality methods: decoding rules that change the output (not lossless), from the model's own uncertainty or
from a contrast with a weaker distribution. One module per method (contrastive, uscd, dola, adadec, ead),
with the parts they share: `context.py` (a second model's or a second prompt's cache kept in step with the
committed text, forwarded over a draft tree's rows), `plausibility.py` (the plausibility heads), `loops.py`
(committing a chosen token through the output committer, for the methods with a loop of their own).

The prefix-functional rules (contrastive, uscd, dola) are logits processors, so they run under any drafter
(the option `drafter`) and greedy speculation gives exactly their own greedy output. AdaDec and EAD have
their own per-token loops (`Decoder.make_loop`). The methods are registered in methods/quality.py.
"""
