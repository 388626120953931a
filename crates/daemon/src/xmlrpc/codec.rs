//! The XML-RPC wire format: decoding `<methodCall>` bodies and encoding `<methodResponse>`
//! bodies (results and faults), on top of the `dxr` crate's value model and serde codec.
//!
//! Why `dxr` and not hand-written XML: it is maintained, covers every type supervisord's
//! unmarshaller accepts (`int`/`i4`, `boolean`, `string`, untyped values as strings, `double`,
//! `dateTime.iso8601`, `base64`, `array`, `struct`), refuses `nil` (like supervisord) unless its
//! `nil` feature is on, rejects absurd nesting with an error instead of overflowing the stack,
//! does not expand DTD entities, and gives us a plain `Value` enum, so fault codes and
//! `system.multicall`'s raw results stay entirely under our control.
//!
//! What this module adds on top:
//! - Strings are made XML 1.0-safe before encoding. supervisord hands log bytes to the client
//!   as strings; bytes that are not UTF-8 arrive here already replaced by U+FFFD (the method
//!   table decodes them lossily), and characters that XML 1.0 cannot carry at all, even as
//!   character references (C0 controls other than tab, LF and CR; U+FFFE; U+FFFF), are
//!   replaced by U+FFFD too. supervisord writes them raw, which makes Python's expat (and so
//!   `supervisorctl tail`) fail on a log containing, say, an ANSI colour escape.
//! - Carriage returns survive the trip: the encoder writes them as `&#13;`, which XML
//!   parsers keep, whereas a raw CR would be normalised to LF by the client's parser.
//! - Responses start with the same `<?xml version='1.0'?>` declaration as Python's
//!   `xmlrpc.client.dumps`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use dxr::{FaultResponse, MethodCall, MethodResponse, Value};

use super::fault::{Fault, FaultCode};

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
pub(crate) fn encode_response(mut value: Value) -> String {
    sanitize(&mut value);
    match (MethodResponse { value }).to_xml() {
        Ok(xml) => with_declaration(&xml),
        Err(error) => encode_fault(&Fault::with_detail(
            FaultCode::Failed,
            format!("cannot encode response: {error}"),
        )),
    }
}

/// Encodes a `<methodResponse>` carrying `<fault>`, with supervisord's code and string.
pub(crate) fn encode_fault(fault: &Fault) -> String {
    let string = sanitize_str(&fault.fault_string()).into_owned();
    let response = FaultResponse { fault: dxr::Fault::new(fault.code.code(), string) };
    match response.to_xml() {
        Ok(xml) => with_declaration(&xml),
        // A fault is an int and a sanitized string: the serializer has nothing to refuse.
        // Should it ever fail, answer with a fixed, valid FAILED fault rather than nothing.
        Err(_) => format!(
            "{DECLARATION}<methodResponse><fault><value><struct>\
             <member><name>faultCode</name><value><int>{}</int></value></member>\
             <member><name>faultString</name><value><string>FAILED</string></value></member>\
             </struct></value></fault></methodResponse>",
            FaultCode::Failed.code()
        ),
    }
}

fn with_declaration(xml: &str) -> String {
    let mut out = String::with_capacity(DECLARATION.len() + xml.len());
    out.push_str(DECLARATION);
    out.push_str(xml);
    out
}

/// Whether XML 1.0 can carry `c` at all (the `Char` production). Surrogates cannot occur in
/// a Rust `char`, so only controls and the two non-characters at the end of the BMP remain.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Replaces every character XML 1.0 cannot carry by U+FFFD; borrows when nothing changes,
/// which is the common case for names, paths and most log text.
pub(crate) fn sanitize_str(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_xml_char) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if is_xml_char(c) { c } else { char::REPLACEMENT_CHARACTER })
                .collect(),
        )
    }
}

/// Makes every string and struct key in `value` XML 1.0-safe, in place.
fn sanitize(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(clean) = sanitize_str(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        Value::Struct(members) => {
            if members.keys().any(|key| matches!(sanitize_str(key), Cow::Owned(_))) {
                let dirty = std::mem::take(members);
                *members = dirty
                    .into_iter()
                    .map(|(key, value)| (sanitize_str(&key).into_owned(), value))
                    .collect::<BTreeMap<_, _>>();
            }
            members.values_mut().for_each(sanitize);
        }
        // Numbers, booleans, dates and base64 have no characters to clean.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let xml = encode_response(Value::Array(vec![
            Value::Integer(5),
            Value::String("a<b&c".into()),
            Value::Boolean(true),
        ]));
        assert!(xml.starts_with("<?xml version='1.0'?>\n<methodResponse><params><param>"));
        assert!(xml.contains("<value><i4>5</i4></value>"));
        assert!(xml.contains("a&lt;b&amp;c"));
        assert!(xml.contains("<value><boolean>1</boolean></value>"));
    }

    #[test]
    fn encodes_a_fault_with_code_and_string() {
        let xml = encode_fault(&Fault::with_detail(FaultCode::BadName, "no<such"));
        assert!(xml.starts_with("<?xml version='1.0'?>\n<methodResponse><fault>"));
        assert!(xml.contains("<name>faultCode</name><value><i4>10</i4></value>"));
        assert!(xml.contains(
            "<name>faultString</name><value><string>BAD_NAME: no&lt;such</string></value>"
        ));
    }

    #[test]
    fn strings_are_made_xml_safe() {
        assert!(matches!(sanitize_str("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(sanitize_str("\u{1b}[31mred\u{0}\u{FFFE}"), "\u{FFFD}[31mred\u{FFFD}\u{FFFD}");
        let xml = encode_response(Value::Struct(BTreeMap::from([(
            "k\u{7}".to_owned(),
            Value::Array(vec![Value::String("bell\u{7}\r\n".into())]),
        )])));
        assert!(!xml.chars().any(|c| c != '\n' && c != '\t' && c.is_control()), "{xml:?}");
        assert!(xml.contains("<name>k\u{FFFD}</name>"));
        // The decoder reads back what the encoder wrote, CR included.
        let back = decode_call(
            xml.replace("methodResponse", "methodCall")
                .replace("<methodCall>", "<methodCall><methodName>a.b</methodName>")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            back.params,
            vec![Value::Struct(BTreeMap::from([(
                "k\u{FFFD}".to_owned(),
                Value::Array(vec![Value::String("bell\u{FFFD}\r\n".into())]),
            )]))]
        );
    }
}
