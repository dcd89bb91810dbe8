"""A stateful logits processor whose effect depends on each row's own path, for the identity tests."""

from decodekit.sampling import Processor


class BanFollowers(Processor):
    """After token t, bans t .. t + 6 (mod the vocabulary): the ban depends on each row's own last token."""

    def reset(self, prompt_ids):
        self.last = prompt_ids[-1]

    def accept(self, tokens):
        self.last = tokens[-1]

    def process(self, logits, paths):
        out = logits.clone()
        for row, path in enumerate(paths):
            last = path[-1] if path else self.last
            out[row, [(last + k) % logits.shape[-1] for k in range(7)]] = float("-inf")
        return out
