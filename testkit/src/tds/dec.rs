//! Exact decimals (DECIMAL/NUMERIC up to 38 digits, MONEY): a sign, a magnitude and a
//! scale, parsed from and printed to canonical text, never through `f64` unless the
//! value came from one.

use std::fmt;

/// Largest magnitude a DECIMAL(38, s) holds: 10^38 - 1.
const MAX_MAG: u128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// An exact decimal: `(-1)^neg * mag / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dec {
    pub neg: bool,
    pub mag: u128,
    pub scale: u8,
}

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

impl Dec {
    /// A decimal from an integer.
    pub fn from_i64(i: i64) -> Dec {
        Dec {
            neg: i < 0,
            mag: i.unsigned_abs() as u128,
            scale: 0,
        }
    }

    /// A decimal from a scaled integer (MONEY is an i64 scaled by 10^4).
    pub fn from_scaled(v: i128, scale: u8) -> Dec {
        Dec {
            neg: v < 0,
            mag: v.unsigned_abs(),
            scale,
        }
        .normal_zero()
    }

    fn normal_zero(mut self) -> Dec {
        if self.mag == 0 {
            self.neg = false;
        }
        self
    }

    /// Parses `[+-]digits[.digits][e[+-]digits]`; `None` if it is not a number or
    /// needs more than 38 digits.
    pub fn parse(s: &str) -> Option<Dec> {
        let s = s.trim();
        let (neg, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (num, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
            None => (body, 0),
        };
        let (int, frac) = match num.split_once('.') {
            Some((a, b)) => (a, b),
            None => (num, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mut scale = frac.len() as i64 - exp as i64;
        let mut digits = digits.to_string();
        // Trailing zeros beyond what fits may be dropped without changing the value.
        while digits.len() > 38 && scale > 0 && digits.ends_with('0') {
            digits.pop();
            scale -= 1;
        }
        if digits.len() > 38 {
            return None;
        }
        let mut mag: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        if scale < 0 {
            mag = mag.checked_mul(pow10((-scale) as u32)?)?;
            scale = 0;
        }
        if mag > MAX_MAG {
            return None;
        }
        if scale > 38 {
            // More fractional digits than a DECIMAL holds: round to 38.
            return Dec {
                neg,
                mag,
                scale: 38,
            }
            .round_from(scale as u32);
        }
        Some(
            Dec {
                neg,
                mag,
                scale: scale as u8,
            }
            .normal_zero(),
        )
    }

    /// `self.mag` is really at `from` fractional digits; round it to `self.scale`.
    fn round_from(self, from: u32) -> Option<Dec> {
        let drop = from - self.scale as u32;
        let d = match pow10(drop) {
            Some(d) => d,
            None => return Some(Dec { mag: 0, ..self }.normal_zero()),
        };
        let (q, r) = (self.mag / d, self.mag % d);
        let mag = if r * 2 >= d { q + 1 } else { q };
        Some(Dec { mag, ..self }.normal_zero())
    }

    /// The exact value of a finite float, to its shortest round-trip representation.
    pub fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        Dec::parse(&format!("{f}"))
    }

    /// The value at another scale, rounding half away from zero; `None` on overflow.
    pub fn rescale(self, scale: u8) -> Option<Dec> {
        if scale >= self.scale {
            let mag = self.mag.checked_mul(pow10((scale - self.scale) as u32)?)?;
            if mag > MAX_MAG {
                return None;
            }
            Some(Dec { mag, scale, ..self })
        } else {
            Dec { scale, ..self }.round_from(self.scale as u32)
        }
    }

    /// Number of digits left of the decimal point (0 for |x| < 1).
    pub fn int_digits(&self) -> u32 {
        let int = self.mag / pow10(self.scale as u32).unwrap_or(u128::MAX);
        if int == 0 {
            0
        } else {
            int.ilog10() + 1
        }
    }

    /// Rounds to `scale` and checks the value fits DECIMAL(precision, scale).
    pub fn fit(self, precision: u8, scale: u8) -> Option<Dec> {
        let d = self.rescale(scale)?;
        (d.int_digits() <= (precision.saturating_sub(scale)) as u32).then_some(d)
    }

    /// Whether the value has no fractional part.
    pub fn is_integral(&self) -> bool {
        self.mag
            .is_multiple_of(pow10(self.scale as u32).unwrap_or(1))
    }

    /// Truncated toward zero to an integer, if it fits i64.
    pub fn trunc_i64(&self) -> Option<i64> {
        let int = self.mag / pow10(self.scale as u32)?;
        let v = i64::try_from(int).ok()?;
        Some(if self.neg { -v } else { v })
    }

    /// The nearest float.
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(0.0)
    }

    /// The value scaled to an integer at `scale` (MONEY: 4), if it fits i64.
    pub fn scaled_i64(&self, scale: u8) -> Option<i64> {
        let d = self.rescale(scale)?;
        let v = i128::try_from(d.mag).ok()?;
        i64::try_from(if d.neg { -v } else { v }).ok()
    }

    /// Significant digits of the magnitude.
    pub fn digits(&self) -> u32 {
        if self.mag == 0 {
            1
        } else {
            self.mag.ilog10() + 1
        }
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mag.to_string();
        let scale = self.scale as usize;
        let sign = if self.neg { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        let max = "99999999999999999999999999999999999999";
        assert_eq!(Dec::parse(max).unwrap().to_string(), max);
        let frac = "-0.12345678901234567890123456789012345678";
        assert_eq!(Dec::parse(frac).unwrap().to_string(), frac);
        assert_eq!(Dec::parse("1e3").unwrap().to_string(), "1000");
        assert_eq!(Dec::parse("1.5E-2").unwrap().to_string(), "0.015");
        assert_eq!(Dec::parse(".5").unwrap().to_string(), "0.5");
        assert_eq!(Dec::parse("-0").unwrap().to_string(), "0");
        assert!(Dec::parse("1e39").is_none());
        assert!(Dec::parse("abc").is_none());
        assert!(Dec::parse("").is_none());
        assert!(Dec::parse("1.2.3").is_none());
    }

    #[test]
    fn rescales_with_rounding_and_checks_precision() {
        let d = Dec::parse("123.455").unwrap();
        assert_eq!(d.rescale(2).unwrap().to_string(), "123.46");
        assert_eq!(
            Dec::parse("-123.455")
                .unwrap()
                .rescale(2)
                .unwrap()
                .to_string(),
            "-123.46"
        );
        assert_eq!(d.rescale(5).unwrap().to_string(), "123.45500");
        assert!(d.fit(5, 2).is_some());
        assert!(d.fit(4, 2).is_none());
        assert_eq!(
            Dec::parse("0.001").unwrap().fit(1, 0).unwrap().to_string(),
            "0"
        );
    }

    #[test]
    fn floats_use_their_shortest_form() {
        assert_eq!(Dec::from_f64(0.1).unwrap().to_string(), "0.1");
        assert_eq!(Dec::from_f64(-2.5e-3).unwrap().to_string(), "-0.0025");
        assert!(Dec::from_f64(f64::NAN).is_none());
        assert_eq!(
            Dec::from_scaled(-9_223_372_036_854_775_808, 4).to_string(),
            "-922337203685477.5808"
        );
    }
}
