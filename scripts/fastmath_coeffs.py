#!/usr/bin/env python3
"""Derives the polynomial coefficients of src/kernels/fastmath.rs.

Near-minimax (Chebyshev) fits computed at 60 digits with mpmath, then rounded
to the target type. Prints Rust constants to paste; the Rust tests measure the
resulting error against the standard library.

  exp: e^r = 1 + r + r^2 * Q(r),  r in [-ln2/2, ln2/2]
  ln:  ln((1+s)/(1-s)) = 2s + s * z * R(z),  z = s^2,  s in [-s_max, s_max],
       s_max = (sqrt2 - 1)/(sqrt2 + 1), the range of s = f/(2+f) for
       1 + f in [sqrt(1/2), sqrt(2)).
"""

import mpmath as mp
import numpy as np

mp.mp.dps = 60


# Both functions are summed from their power series (no cancellation near 0);
# 80 terms are far beyond 60 digits on these small intervals.
def exp_q(r):
    return mp.fsum(r**k / mp.factorial(k + 2) for k in range(80))


def ln_r(z):
    return mp.fsum(2 * z**k / (2 * k + 3) for k in range(80))


def fit(f, lo, hi, degree):
    coeffs, err = mp.chebyfit(f, [lo, hi], degree + 1, error=True)
    return list(reversed(coeffs)), err  # lowest degree first


def show(name, coeffs, ty):
    cast = np.float32 if ty == "f32" else np.float64
    vals = [repr(float(cast(float(c)))) for c in coeffs]
    print(f"const {name}: [{ty}; {len(vals)}] = [{', '.join(vals)}];")


def main():
    half_ln2 = mp.log(2) / 2
    s_max = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)
    for ty, exp_degree, ln_degree in (("f32", 4, 2), ("f64", 9, 6)):
        q, err_q = fit(exp_q, -half_ln2, half_ln2, exp_degree)
        r, err_r = fit(ln_r, 0, s_max**2, ln_degree)
        print(f"// {ty}: Q fit error {mp.nstr(err_q, 3)} (times r^2 <= 0.12), R fit error {mp.nstr(err_r, 3)} (times s*z <= 0.0051)")
        show(f"EXP_{ty.upper()}", q, ty)
        show(f"LN_{ty.upper()}", r, ty)
    # Cody-Waite split of ln 2: a high part with trailing zero bits, so that
    # n * LN2_HI is exact for every exponent n the kernels meet.
    ln2 = mp.log(2)
    for ty, keep_bits in (("f32", 12), ("f64", 32)):
        m, e = mp.frexp(ln2)
        hi = mp.ldexp(mp.floor(mp.ldexp(m, keep_bits)), e - keep_bits)
        lo = ln2 - hi
        cast = np.float32 if ty == "f32" else np.float64
        print(f"const LN2_HI_{ty.upper()}: {ty} = {float(cast(float(hi)))!r}; const LN2_LO_{ty.upper()}: {ty} = {float(cast(float(lo)))!r};")


if __name__ == "__main__":
    main()
