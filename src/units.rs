//! Temperature units: conversion between the unit a sensor reports and the
//! unit its group averages in, and the physical plausibility check.

use crate::history::row::Unit;

/// Why a reported value cannot be a temperature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("value {value} {unit} is below absolute zero")]
    BelowAbsoluteZero { value: f64, unit: &'static str },
    #[error("value is not a finite number")]
    NotFinite,
}

fn to_kelvin(v: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Kelvin => v,
        Unit::Celsius => v + 273.15,
        Unit::Fahrenheit => (v - 32.0) * 5.0 / 9.0 + 273.15,
    }
}

fn from_kelvin(k: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Kelvin => k,
        Unit::Celsius => k - 273.15,
        Unit::Fahrenheit => (k - 273.15) * 9.0 / 5.0 + 32.0,
    }
}

/// Convert `value` from `from` to `to`, refusing non-finite values and
/// values below absolute zero (a sensor fault, not a reading).
pub fn convert(value: f64, from: Unit, to: Unit) -> Result<f64, UnitError> {
    if !value.is_finite() {
        return Err(UnitError::NotFinite);
    }
    let k = to_kelvin(value, from);
    // A little slack for rounding in the sensor's own conversion.
    if k < -1e-9 {
        return Err(UnitError::BelowAbsoluteZero {
            value,
            unit: from.as_str(),
        });
    }
    if from == to {
        return Ok(value);
    }
    Ok(from_kelvin(k.max(0.0), to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn conversions() {
        assert!(close(
            convert(212.0, Unit::Fahrenheit, Unit::Celsius).unwrap(),
            100.0
        ));
        assert!(close(
            convert(0.0, Unit::Celsius, Unit::Kelvin).unwrap(),
            273.15
        ));
        assert!(close(
            convert(300.0, Unit::Kelvin, Unit::Fahrenheit).unwrap(),
            80.33
        ));
        assert!(close(
            convert(-40.0, Unit::Celsius, Unit::Fahrenheit).unwrap(),
            -40.0
        ));
        assert_eq!(convert(21.5, Unit::Celsius, Unit::Celsius).unwrap(), 21.5);
    }

    #[test]
    fn impossible_values() {
        assert!(matches!(
            convert(-300.0, Unit::Celsius, Unit::Celsius),
            Err(UnitError::BelowAbsoluteZero { .. })
        ));
        assert!(matches!(
            convert(-1.0, Unit::Kelvin, Unit::Celsius),
            Err(UnitError::BelowAbsoluteZero { .. })
        ));
        assert_eq!(
            convert(f64::NAN, Unit::Celsius, Unit::Celsius),
            Err(UnitError::NotFinite)
        );
        assert_eq!(
            convert(f64::INFINITY, Unit::Celsius, Unit::Kelvin),
            Err(UnitError::NotFinite)
        );
        assert!(convert(-459.67, Unit::Fahrenheit, Unit::Kelvin).is_ok());
    }
}
