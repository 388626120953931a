//! XML-RPC arguments as typed Rust values: each parameter type says what
//! `system.methodSignature` calls it and how an argument is checked, so a method's
//! signature and its argument checking come from the one list of types its handler takes.
//!
//! Every argument is checked up front; a missing, extra or mistyped one is
//! `INCORRECT_PARAMETERS` (supervisord finds type errors only where Python happens to raise
//! `TypeError`). The one leniency is that an `int` is accepted where a boolean is expected,
//! as Python's truthiness would.

use dxr::Value;

use crate::fault::{Fault, FaultCode};

pub(crate) fn incorrect() -> Fault {
    Fault::new(FaultCode::IncorrectParameters)
}

/// One parameter type.
pub(crate) trait Param<'a>: Sized {
    /// Its name in `system.methodSignature`.
    const TYPE: &'static str;
    /// Whether a call may leave it out; only trailing parameters are optional.
    const OPTIONAL: bool = false;
    /// Checks one argument; `None` when the call did not send it.
    fn take(value: Option<&'a Value>) -> Result<Self, Fault>;
}

impl<'a> Param<'a> for &'a str {
    const TYPE: &'static str = "string";
    fn take(value: Option<&'a Value>) -> Result<Self, Fault> {
        match value {
            Some(Value::String(text)) => Ok(text),
            _ => Err(incorrect()),
        }
    }
}

impl Param<'_> for i32 {
    const TYPE: &'static str = "int";
    fn take(value: Option<&Value>) -> Result<Self, Fault> {
        match value {
            Some(Value::Integer(number)) => Ok(*number),
            _ => Err(incorrect()),
        }
    }
}

/// supervisord's optional `wait=True`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait(pub(crate) bool);

impl Param<'_> for Wait {
    const TYPE: &'static str = "boolean";
    const OPTIONAL: bool = true;
    fn take(value: Option<&Value>) -> Result<Self, Fault> {
        match value {
            None => Ok(Wait(true)),
            Some(Value::Boolean(flag)) => Ok(Wait(*flag)),
            Some(Value::Integer(number)) => Ok(Wait(*number != 0)),
            Some(_) => Err(incorrect()),
        }
    }
}

/// A signal, by name or number; whether the platform has it is decided later, since an
/// unknown process wins over a bad signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignalArg<'a>(pub(crate) &'a Value);

impl<'a> Param<'a> for SignalArg<'a> {
    const TYPE: &'static str = "string";
    fn take(value: Option<&'a Value>) -> Result<Self, Fault> {
        match value {
            Some(value @ (Value::String(_) | Value::Integer(_))) => Ok(SignalArg(value)),
            _ => Err(incorrect()),
        }
    }
}

/// Bytes for a process's stdin: a string (sent as UTF-8) or, beyond supervisord, base64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chars<'a>(pub(crate) &'a [u8]);

impl<'a> Param<'a> for Chars<'a> {
    const TYPE: &'static str = "string";
    fn take(value: Option<&'a Value>) -> Result<Self, Fault> {
        match value {
            Some(Value::String(text)) => Ok(Chars(text.as_bytes())),
            Some(Value::Base64(bytes)) => Ok(Chars(bytes)),
            _ => Err(incorrect()),
        }
    }
}

/// An array argument (`system.multicall`'s calls).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Array<'a>(pub(crate) &'a [Value]);

impl<'a> Param<'a> for Array<'a> {
    const TYPE: &'static str = "array";
    fn take(value: Option<&'a Value>) -> Result<Self, Fault> {
        match value {
            Some(Value::Array(items)) => Ok(Array(items)),
            _ => Err(incorrect()),
        }
    }
}

/// A whole argument list: a tuple of [`Param`]s.
pub(crate) trait Params<'a>: Sized {
    /// The parameter types, in order, as `system.methodSignature` lists them.
    const TYPES: &'static [&'static str];
    /// Checks the count, then each argument in order.
    fn parse(values: &'a [Value]) -> Result<Self, Fault>;
}

impl<'a> Params<'a> for () {
    const TYPES: &'static [&'static str] = &[];
    fn parse(values: &'a [Value]) -> Result<Self, Fault> {
        if values.is_empty() { Ok(()) } else { Err(incorrect()) }
    }
}

macro_rules! tuple_params {
    ($($param:ident $index:tt),+) => {
        impl<'a, $($param: Param<'a>),+> Params<'a> for ($($param,)+) {
            const TYPES: &'static [&'static str] = &[$($param::TYPE),+];
            fn parse(values: &'a [Value]) -> Result<Self, Fault> {
                let optional = [$($param::OPTIONAL),+];
                let required = optional.iter().filter(|optional| !**optional).count();
                if values.len() < required || values.len() > optional.len() {
                    return Err(incorrect());
                }
                Ok(($($param::take(values.get($index))?,)+))
            }
        }
    };
}

tuple_params!(A 0);
tuple_params!(A 0, B 1);
tuple_params!(A 0, B 1, C 2);

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn counts_and_types_are_checked() {
        type Start<'a> = (&'a str, Wait);
        assert_eq!(Start::TYPES, ["string", "boolean"]);
        assert_eq!(Start::parse(&[s("web")]).map(|(n, w)| (n, w.0)), Ok(("web", true)));
        let with_int = [s("web"), Value::Integer(0)];
        assert_eq!(Start::parse(&with_int).map(|(n, w)| (n, w.0)), Ok(("web", false)));
        assert_eq!(Start::parse(&[]).err(), Some(incorrect()));
        assert_eq!(Start::parse(&[s("a"), s("b")]).err(), Some(incorrect()));
        assert_eq!(Start::parse(&[s("a"), Value::Boolean(true), s("c")]).err(), Some(incorrect()));
        assert_eq!(<()>::parse(&[s("a")]), Err(incorrect()));
        assert_eq!(<(i32, i32)>::parse(&[Value::Integer(1), s("2")]), Err(incorrect()));
    }
}
