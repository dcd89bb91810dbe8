"""The chi-square test of the exactness tests: observed outcome counts against an enumerated distribution."""

from scipy.stats import chisquare


def pooled_chi_square_p(counts, exact, runs):
    """p-value of `counts` (outcome -> runs) against `exact` (outcome -> probability), outcomes expected fewer
    than 5 times pooled so the chi-square approximation holds; counts of outcomes outside `exact` are left out."""
    observed, expected = [], []
    small_obs = small_exp = 0.0
    for outcome, p in exact.items():
        if p * runs < 5:
            small_obs += counts.get(outcome, 0)
            small_exp += p * runs
        else:
            observed.append(counts.get(outcome, 0))
            expected.append(p * runs)
    if small_exp > 0:
        observed.append(small_obs)
        expected.append(small_exp)
    scale = sum(observed) / sum(expected)  # float32 products of probabilities sum to 1 only within rounding
    return chisquare(observed, [e * scale for e in expected]).pvalue
