"""Grammar-constrained decoding on llguidance: JSON schemas, any JSON value, regular expressions and Lark
grammars as logits processors that compose exactly with every drafter (the constrained output of a
speculative method is the constrained target's, greedy or sampled).

grammar.py: `Grammar`, a checked constraint (made before any model loads); processor.py: its per-request
`GrammarProcessor` over a draft tree's rows; tokenizer.py: the model's tokenizer as llguidance sees it;
options.py: a command-line value (a file or inline text) into a Grammar.
"""

from decodekit.constrain.grammar import Grammar
from decodekit.constrain.options import grammar_from_options
from decodekit.constrain.processor import GrammarProcessor, MaskStats

__all__ = ["Grammar", "GrammarProcessor", "MaskStats", "grammar_from_options"]
