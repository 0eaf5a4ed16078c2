//! Numbers written with a fixed count of decimals ("0.93"), as
//! `format!("{:.2}", x)` writes them, without core's exact float path.
//!
//! Every answer explains itself with a few dozen such numbers, and core's
//! fixed-precision formatting (Grisu's exact mode with a Dragon fallback)
//! was 3.4% of a `GetBestChannel`'s server CPU. For the numbers reasons hold
//! (not negative, under a million) the digits are those of `x * 10^N`
//! rounded to an integer: the product is off the exact one by less than
//! 1.2e-7, so rounding it gives the exact rounding unless the product lies
//! within 1e-6 of a tie; there the product's exact error (a fused
//! multiply-add) decides, and an exact tie (0.125 to two decimals) is
//! rounded half to even, as core rounds it. Other numbers go to core.

use std::fmt;

/// `x` with `N` decimals (`N` at most 3), the same text as `{:.N}`.
#[derive(Clone, Copy, Debug)]
pub struct Decimals<const N: usize>(pub f64);

const SCALE: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
const POWER: [u64; 4] = [1, 10, 100, 1000];

impl<const N: usize> Decimals<N> {
    /// `x * 10^N` rounded, when that is the exact rounding of `x`.
    fn scaled(self) -> Option<u64> {
        let x = self.0;
        // NaN, infinities and negative numbers (negative zero included: core
        // writes "-0.00") go to core.
        if N >= SCALE.len() || x.is_nan() || x.is_sign_negative() || x >= 1e6 {
            return None;
        }
        let product = x * SCALE[N];
        let whole = product.floor();
        let fraction = product - whole;
        // In range by the checks above (under 1e9).
        let integer = whole as u64;
        if (fraction - 0.5).abs() < 1e-6 {
            // Near a tie the float product's rounding matters. A fused
            // multiply-add gives its error exactly (x * 10^N is product +
            // error, both floats), and the error is under half a unit of the
            // product's last place while `fraction - 0.5` is a whole number
            // of them: so the error decides only an exact .5, and an exact
            // tie is rounded half to even, as core rounds it.
            let error = x.mul_add(SCALE[N], -product);
            let up = fraction > 0.5
                || (fraction == 0.5 && (error > 0.0 || (error == 0.0 && integer & 1 == 1)));
            return Some(integer + u64::from(up));
        }
        Some(integer + u64::from(fraction > 0.5))
    }
}

impl<const N: usize> fmt::Display for Decimals<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(scaled) = self.scaled() else {
            return write!(f, "{:.*}", N, self.0);
        };
        let mut integer = itoa::Buffer::new();
        f.write_str(integer.format(scaled / POWER[N]))?;
        if N == 0 {
            return Ok(());
        }
        let mut digits = [b'0'; 4];
        digits[0] = b'.';
        let mut rest = scaled % POWER[N];
        for d in digits[1..=N].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        // ASCII by construction.
        f.write_str(std::str::from_utf8(&digits[..=N]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_core(x: f64) {
        assert_eq!(Decimals::<0>(x).to_string(), format!("{x:.0}"), "{x:e}");
        assert_eq!(Decimals::<1>(x).to_string(), format!("{x:.1}"), "{x:e}");
        assert_eq!(Decimals::<2>(x).to_string(), format!("{x:.2}"), "{x:e}");
        assert_eq!(Decimals::<3>(x).to_string(), format!("{x:.3}"), "{x:e}");
    }

    #[test]
    fn named_cases_read_as_cores() {
        for x in [
            0.0,
            -0.0,
            1e-300,
            0.004999,
            0.005,
            0.015,
            0.125,
            0.5,
            1.005,
            2.675,
            0.285,
            1.0,
            9.995,
            99.995,
            999_999.995,
            999_999.999_6,
            1e6,
            1e6 + 0.5,
            1e20,
            -1.5,
            -0.001,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            same_as_core(x);
        }
    }

    #[test]
    fn every_tie_and_its_neighbours_read_as_cores() {
        // Thousandths and half-thousandths up to 100, and the three floats
        // either side: where a product's rounding could part from core's.
        for k in 0..200_000u64 {
            let x = k as f64 / 2000.0;
            same_as_core(x);
            for ulps in 1..=3 {
                same_as_core(f64::from_bits(x.to_bits() + ulps));
                if x > 0.0 {
                    same_as_core(f64::from_bits(x.to_bits() - ulps));
                }
            }
        }
    }

    #[test]
    fn exact_binary_ties_read_as_cores() {
        // Odd multiples of a power of two: the numbers whose products end in
        // exactly .5, over the whole range taken here.
        for j in 1..=12 {
            let step = 1.0 / f64::from(1u32 << j);
            for k in (0..4_000u32).chain((1..200).map(|m| m * 4_999)) {
                same_as_core(f64::from(2 * k + 1) * step);
            }
        }
    }

    #[test]
    fn random_numbers_read_as_cores() {
        // A fixed xorshift sequence: uniform in [0, 1), and spread over
        // magnitudes up to 1e7.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let unit = (next() >> 11) as f64 / (1u64 << 53) as f64;
            same_as_core(unit);
            let exponent = (next() % 10) as i32 - 3;
            same_as_core(unit * 10f64.powi(exponent));
        }
    }
}
