//! The XML-RPC wire format: decoding `<methodCall>` bodies (with the `dxr` crate) and
//! encoding `<methodResponse>` bodies, results and faults (written directly).
//!
//! Why `dxr` for decoding: the request is the untrusted half, and dxr is maintained, covers
//! every type supervisord's unmarshaller accepts (`int`/`i4`, `boolean`, `string`, untyped
//! values as strings, `double`, `dateTime.iso8601`, `base64`, `array`, `struct`), refuses
//! `nil` (like supervisord) since its `nil` feature is off, rejects absurd nesting with an
//! error instead of overflowing the stack, does not expand DTD entities, and gives a plain
//! `Value` enum, so fault codes and `system.multicall`'s raw results stay under our control.
//!
//! Why a direct writer for encoding: writing XML-RPC is a fixed, tiny grammar, and the
//! escaping must go beyond what a generic serializer does (below). dxr's serde path also
//! took 5 ms for a 500-process `getAllProcessInfo` (release build), half the 10 ms that call
//! may take; this writer is a single pass into one `String`.
//!
//! Escaping: supervisord hands log bytes to the client as strings.
//! - Bytes that are not UTF-8 arrive here already replaced by U+FFFD (the method table
//!   decodes them lossily).
//! - Characters XML 1.0 cannot carry at all, even as character references (C0 controls
//!   other than tab, LF and CR; U+FFFE; U+FFFF), become U+FFFD. supervisord writes them
//!   raw, which makes Python's expat (and so `supervisorctl tail`) fail on a log containing,
//!   say, an ANSI colour escape.
//! - Carriage returns are written as `&#13;`, which XML parsers keep, whereas a raw CR
//!   would be normalised to LF by the client's parser.
//! - Responses start with the same `<?xml version='1.0'?>` declaration as Python's
//!   `xmlrpc.client.dumps`, and integers are `<int>` as Python writes them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dxr::{MethodCall, Value};

use crate::fault::Fault;

/// The XML declaration Python's `xmlrpc.client.dumps` writes before every response.
const DECLARATION: &str = "<?xml version='1.0'?>\n";

/// A decoded `<methodCall>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// The `<methodName>` text, not yet checked against the method table.
    pub(crate) method: String,
    /// The `<param>` values in order.
    pub(crate) params: Vec<Value>,
}

/// Why a request body is not a `<methodCall>`. Both cases answer HTTP 400, as supervisord does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("request body is not UTF-8")]
    NotUtf8,
    #[error("request body is not an XML-RPC methodCall")]
    Malformed,
}

/// Decodes a `<methodCall>` body.
///
/// A missing `<methodName>`, an unknown value type (including `nil`), an out-of-range `int`
/// and XML that is not well-formed are all [`DecodeError::Malformed`].
pub(crate) fn decode_call(body: &[u8]) -> Result<Call, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    // The dxr error carries the whole body as its message; it is dropped here on purpose so
    // a hostile body is never copied into logs.
    let call = MethodCall::from_xml(text).map_err(|_| DecodeError::Malformed)?;
    Ok(Call { method: call.name.into_owned(), params: call.params })
}

/// Encodes a successful `<methodResponse>` carrying `value`.
pub(crate) fn encode_response(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(DECLARATION);
    out.push_str("<methodResponse><params><param>");
    write_value(&mut out, value);
    out.push_str("</param></params></methodResponse>");
    out
}

/// Encodes a `<methodResponse>` carrying `<fault>`, with supervisord's code and string.
pub(crate) fn encode_fault(fault: &Fault) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(DECLARATION);
    out.push_str("<methodResponse><fault><value><struct><member><name>faultCode</name>");
    write_value(&mut out, &Value::Integer(fault.code.code()));
    out.push_str("</member><member><name>faultString</name>");
    write_value(&mut out, &Value::String(fault.fault_string()));
    out.push_str("</member></struct></value></fault></methodResponse>");
    out
}

/// The encoded length of `value`, without building the text: what `system.multicall`
/// counts against the response limit.
pub(crate) fn encoded_len(value: &Value) -> usize {
    let mut length = Length(0);
    write_value(&mut length, value);
    length.0
}

/// Where the writer puts XML: a `String`, or a [`Length`] that only counts it, so that
/// measuring and writing cannot disagree.
trait Out: fmt::Write {
    fn put(&mut self, text: &str);
}

impl Out for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// Counts the bytes written.
struct Length(usize);

impl fmt::Write for Length {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0 += text.len();
        Ok(())
    }
}

impl Out for Length {
    fn put(&mut self, text: &str) {
        self.0 += text.len();
    }
}

/// Writes `<value>...</value>` the way Python's `xmlrpc.client` marshals it.
fn write_value(out: &mut impl Out, value: &Value) {
    out.put("<value>");
    match value {
        Value::Integer(number) => {
            let _ = write!(out, "<int>{number}</int>");
        }
        Value::Boolean(flag) => {
            out.put(if *flag { "<boolean>1</boolean>" } else { "<boolean>0</boolean>" })
        }
        Value::String(text) => {
            out.put("<string>");
            escape_into(out, text);
            out.put("</string>");
        }
        Value::Double(number) => {
            // Rust prints finite doubles without an exponent and `NaN`/`inf` otherwise;
            // Python's `float()` reads all of them.
            let _ = write!(out, "<double>{number}</double>");
        }
        Value::DateTime(time) => {
            let _ = write!(out, "<dateTime.iso8601>{time}</dateTime.iso8601>");
        }
        Value::Base64(bytes) => {
            out.put("<base64>");
            out.put(&STANDARD.encode(bytes));
            out.put("</base64>");
        }
        Value::Array(items) => {
            out.put("<array><data>");
            for item in items {
                write_value(out, item);
            }
            out.put("</data></array>");
        }
        Value::Struct(members) => {
            out.put("<struct>");
            for (name, member) in members {
                out.put("<member><name>");
                escape_into(out, name);
                out.put("</name>");
                write_value(out, member);
                out.put("</member>");
            }
            out.put("</struct>");
        }
        // `Value` is non-exhaustive; `i8` and `nil` exist only behind dxr features this
        // crate does not enable, and the method table never builds them. Should one appear,
        // an empty string keeps the document valid.
        _ => out.put("<string></string>"),
    }
    out.put("</value>");
}

/// Whether XML 1.0 can carry `c` at all (the `Char` production). Surrogates cannot occur in
/// a Rust `char`, so only controls and the two non-characters at the end of the BMP remain.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends `text` as XML character data: markup characters escaped, CR as a character
/// reference (a raw one would be read back as LF), and characters XML 1.0 cannot carry
/// replaced by U+FFFD.
fn escape_into(out: &mut impl Out, text: &str) {
    let mut clean_from = 0;
    for (index, c) in text.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '\r' => "&#13;",
            c if !is_xml_char(c) => "\u{FFFD}",
            _ => continue,
        };
        out.put(&text[clean_from..index]);
        out.put(replacement);
        clean_from = index + c.len_utf8();
    }
    out.put(&text[clean_from..]);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fault::FaultCode;

    fn call(xml: &str) -> Result<Call, DecodeError> {
        decode_call(xml.as_bytes())
    }

    #[test]
    fn decodes_what_python_xmlrpc_client_sends() {
        // Byte for byte what `xmlrpc.client.dumps((name, 1, True), 'supervisor.x')` writes.
        let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>supervisor.startProcess\
                    </methodName>\n<params>\n<param>\n<value><string>web:web_0</string></value>\n\
                    </param>\n<param>\n<value><int>1</int></value>\n</param>\n<param>\n\
                    <value><boolean>1</boolean></value>\n</param>\n</params>\n</methodCall>\n";
        let decoded = call(body).unwrap();
        assert_eq!(decoded.method, "supervisor.startProcess");
        assert_eq!(
            decoded.params,
            vec![Value::String("web:web_0".into()), Value::Integer(1), Value::Boolean(true)]
        );
    }

    #[test]
    fn decodes_every_supervisord_type() {
        let body = "<methodCall><methodName>a.b</methodName><params>\
            <param><value><i4>-7</i4></value></param>\
            <param><value>  untyped is a string </value></param>\
            <param><value><double>1.5</double></value></param>\
            <param><value><dateTime.iso8601>20261124T06:00:00</dateTime.iso8601></value></param>\
            <param><value><base64>AAEC/w==</base64></value></param>\
            <param><value><array><data><value><string>x</string></value></data></array></value></param>\
            <param><value><struct><member><name>k</name><value><boolean>0</boolean></value></member></struct></value></param>\
            <param><value><string></string></value></param>\
            </params></methodCall>";
        let params = call(body).unwrap().params;
        assert_eq!(params[0], Value::Integer(-7));
        assert_eq!(params[1], Value::String("  untyped is a string ".into()));
        assert_eq!(params[2], Value::Double(1.5));
        assert!(matches!(params[3], Value::DateTime(_)));
        assert_eq!(params[4], Value::Base64(vec![0, 1, 2, 255]));
        assert_eq!(params[5], Value::Array(vec![Value::String("x".into())]));
        assert_eq!(
            params[6],
            Value::Struct(BTreeMap::from([("k".to_owned(), Value::Boolean(false))]))
        );
        assert_eq!(params[7], Value::String(String::new()));
    }

    #[test]
    fn call_without_params_has_none() {
        let decoded =
            call("<methodCall><methodName>system.listMethods</methodName></methodCall>").unwrap();
        assert!(decoded.params.is_empty());
        let decoded =
            call("<methodCall><methodName>a.b</methodName><params/></methodCall>").unwrap();
        assert!(decoded.params.is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"not xml",
            b"<methodCall>",
            b"<methodCall><params/></methodCall>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><nil/></value></param></params></methodCall>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><int>99999999999</int></value></param></params></methodCall>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><boolean>yes</boolean></value></param></params></methodCall>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><int>1</int></value></param></params>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><base64>!!!</base64></value></param></params></methodCall>",
            b"<methodCall><methodName>a.b</methodName><params><param><value><struct><member><value><int>1</int></value></member></struct></value></param></params></methodCall>",
            b"<methodResponse><params/></methodResponse>",
        ];
        for body in cases {
            assert_eq!(
                decode_call(body),
                Err(DecodeError::Malformed),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(decode_call(b"<methodCall>\xff</methodCall>"), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let depth = 100_000;
        let mut body = String::from("<methodCall><methodName>a.b</methodName><params><param>");
        body.push_str(&"<value><array><data>".repeat(depth));
        body.push_str(&"</data></array></value>".repeat(depth));
        body.push_str("</param></params></methodCall>");
        assert_eq!(call(&body), Err(DecodeError::Malformed));
    }

    #[test]
    fn entities_are_not_expanded() {
        let body = "<?xml version='1.0'?><!DOCTYPE m [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;\">]>\
                    <methodCall><methodName>a.b</methodName><params><param><value>&b;</value>\
                    </param></params></methodCall>";
        // Either refused or passed through literally; never expanded.
        if let Ok(decoded) = call(body) {
            assert_ne!(decoded.params, vec![Value::String("a".repeat(30))]);
        }
    }

    #[test]
    fn encodes_a_response_with_declaration() {
        let xml = encode_response(&Value::Array(vec![
            Value::Integer(5),
            Value::String("a<b&c".into()),
            Value::Boolean(true),
        ]));
        assert!(xml.starts_with("<?xml version='1.0'?>\n<methodResponse><params><param>"));
        assert!(xml.contains("<value><int>5</int></value>"));
        assert!(xml.contains("a&lt;b&amp;c"));
        assert!(xml.contains("<value><boolean>1</boolean></value>"));
    }

    #[test]
    fn encodes_a_fault_with_code_and_string() {
        let xml = encode_fault(&Fault::with_detail(FaultCode::BadName, "no<such"));
        assert!(xml.starts_with("<?xml version='1.0'?>\n<methodResponse><fault>"));
        assert!(xml.contains("<name>faultCode</name><value><int>10</int></value>"));
        assert!(xml.contains(
            "<name>faultString</name><value><string>BAD_NAME: no&lt;such</string></value>"
        ));
    }

    #[test]
    fn strings_are_made_xml_safe() {
        let escaped = |text: &str| {
            let mut out = String::new();
            escape_into(&mut out, text);
            out
        };
        assert_eq!(escaped("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escaped("a<b>&c]]>"), "a&lt;b&gt;&amp;c]]&gt;");
        assert_eq!(
            escaped("\u{1b}[31mred\u{0}\u{FFFE}\r\n"),
            "\u{FFFD}[31mred\u{FFFD}\u{FFFD}&#13;\n"
        );
        assert_eq!(escaped("héllo ✓ 𝄞"), "héllo ✓ 𝄞");
    }

    #[test]
    fn encoded_len_is_the_length_written() {
        let value = Value::Struct(BTreeMap::from([
            ("a&b".to_owned(), Value::Array(vec![Value::String("x\r<\u{1}é".into())])),
            ("n".to_owned(), Value::Integer(-42)),
            ("d".to_owned(), Value::Double(0.5)),
            ("b".to_owned(), Value::Base64(vec![1, 2, 3, 4])),
        ]));
        let mut written = String::new();
        write_value(&mut written, &value);
        assert_eq!(encoded_len(&value), written.len());
    }

    #[test]
    fn every_value_type_round_trips_through_the_decoder() {
        let value = Value::Struct(BTreeMap::from([
            ("k\u{7}".to_owned(), Value::Array(vec![Value::String("bell\u{7}\r\n<&>".into())])),
            ("int".to_owned(), Value::Integer(i32::MIN)),
            ("yes".to_owned(), Value::Boolean(true)),
            ("no".to_owned(), Value::Boolean(false)),
            ("double".to_owned(), Value::Double(-12.25)),
            ("bytes".to_owned(), Value::Base64(vec![0, 1, 254, 255])),
            ("when".to_owned(), Value::DateTime("20261124T06:00:00".parse().unwrap())),
            ("empty".to_owned(), Value::Array(vec![])),
            ("nothing".to_owned(), Value::Struct(BTreeMap::new())),
            ("blank".to_owned(), Value::String(String::new())),
        ]));
        let xml = encode_response(&value);
        assert!(!xml.chars().any(|c| c != '\n' && c.is_control()), "{xml:?}");
        let as_call = xml
            .replace("methodResponse>", "methodCall>")
            .replace("<methodCall>", "<methodCall><methodName>a.b</methodName>");
        let back = decode_call(as_call.as_bytes()).unwrap();
        let Value::Struct(mut expected) = value else { unreachable!() };
        let bell = expected.remove("k\u{7}").unwrap();
        assert_eq!(bell, Value::Array(vec![Value::String("bell\u{7}\r\n<&>".into())]));
        expected.insert(
            "k\u{FFFD}".to_owned(),
            Value::Array(vec![Value::String("bell\u{FFFD}\r\n<&>".into())]),
        );
        assert_eq!(back.params, vec![Value::Struct(expected)]);
    }
}
