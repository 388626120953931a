//! `env_file` contents: the dotenv syntax, parsed by one pure function.
//!
//! [`parse`] reads the text of one file into `KEY=value` pairs, in file order:
//! - blank lines and lines whose first non-blank character is `#` are skipped;
//! - a line is `[export ]KEY=VALUE`, with blanks allowed around `=`; `KEY` is
//!   `[A-Za-z_][A-Za-z0-9_]*`;
//! - an unquoted value runs to the end of the line, with trailing blanks and a
//!   ` #comment` (a `#` after a blank) removed;
//! - `'single quoted'` values are taken as written (no escapes, no references)
//!   and may span lines;
//! - `"double quoted"` values may span lines and know the escapes `\n`, `\r`,
//!   `\t`, `\\`, `\"` and `\$` (any other backslash is kept as written);
//! - in unquoted and double-quoted values, `${NAME}` and `$NAME` are replaced by
//!   the value of `NAME` given earlier (in this file, or by the caller's
//!   `lookup`: earlier files, then the daemon's environment), or by nothing when
//!   `NAME` is unknown; a `$` not followed by a name is kept.
//!
//! After a closing quote only blanks and a `#` comment may follow. Every
//! problem is an error at its 1-based line; an error message never quotes a
//! value, since env files hold secrets.
//!
//! The parser makes one pass over the text and copies each referenced value
//! once per reference; the expanded size of one pair and of the whole file is
//! bounded ([`MAX_PAIR_BYTES`], [`MAX_FILE_BYTES`]), so the work is linear in
//! the input plus at most that bound, whatever the references nest into.

/// The longest `KEY=value` the kernel passes to a program (`MAX_ARG_STRLEN`,
/// 32 pages, terminating NUL included).
pub const MAX_PAIR_BYTES: usize = 32 * 4096 - 1;

/// The most expanded bytes one file may produce.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A problem at a line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    /// 1-based.
    pub line: u32,
    /// What is wrong, in one line, without the value.
    pub message: String,
}

/// Parses env file `text`; `lookup` answers `${NAME}` for names this file has
/// not set (yet).
pub fn parse(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let mut parser = Parser { bytes: text.as_bytes(), pos: 0, line: 1, total: 0 };
    let mut pairs: Vec<(String, String)> = Vec::new();
    // Name -> index in `pairs`, so a reference costs no scan.
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    loop {
        parser.skip_blanks();
        match parser.peek() {
            None => break,
            Some(b'\n') => {
                parser.newline();
                continue;
            }
            Some(b'#') => {
                parser.skip_to_eol();
                continue;
            }
            Some(_) => {}
        }
        let line = parser.line;
        let mut key = parser.name();
        if key == "export" && parser.peek().is_some_and(is_blank) {
            parser.skip_blanks();
            key = parser.name();
        }
        if key.is_empty() {
            return Err(parser.error(line, "expected KEY=VALUE (KEY is letters, digits and _)"));
        }
        if key.as_bytes()[0].is_ascii_digit() {
            return Err(parser.error(line, format!("{key}: a name cannot start with a digit")));
        }
        parser.skip_blanks();
        if parser.peek() != Some(b'=') {
            return Err(parser.error(line, format!("{key}: expected '=' after the name")));
        }
        parser.pos += 1;
        parser.skip_blanks();
        let resolve = |name: &str| match index.get(name) {
            Some(&i) => Some(pairs[i].1.clone()),
            None => lookup(name),
        };
        let value = parser.value(&key, line, &resolve)?;
        if key.len() + 1 + value.len() > MAX_PAIR_BYTES {
            return Err(parser
                .error(line, format!("{key}: the value is longer than {MAX_PAIR_BYTES} bytes")));
        }
        match index.get(&key) {
            Some(&i) => pairs[i].1 = value,
            None => {
                index.insert(key.clone(), pairs.len());
                pairs.push((key, value));
            }
        }
    }
    Ok(pairs)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    /// Expanded bytes produced so far.
    total: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    fn skip_to_eol(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn error(&self, line: u32, message: impl Into<String>) -> DotenvError {
        DotenvError { line, message: message.into() }
    }

    /// A run of name characters (possibly empty, possibly starting with a digit).
    fn name(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_name) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    fn push(
        &mut self,
        out: &mut Vec<u8>,
        bytes: &[u8],
        key: &str,
        line: u32,
    ) -> Result<(), DotenvError> {
        self.total += bytes.len();
        if self.total > MAX_FILE_BYTES || out.len() + bytes.len() > MAX_PAIR_BYTES {
            return Err(self.error(
                line,
                format!("{key}: the expanded values are longer than the file may produce"),
            ));
        }
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// After a `$`: a `${NAME}` or `$NAME` reference, or a literal `$`.
    fn reference(
        &mut self,
        out: &mut Vec<u8>,
        key: &str,
        line: u32,
        resolve: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), DotenvError> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty()
                    || !is_name_start(name.as_bytes()[0])
                    || self.peek() != Some(b'}')
                {
                    return Err(
                        self.error(line, format!("{key}: a reference is written ${{NAME}}"))
                    );
                }
                self.pos += 1;
                let value = resolve(&name).unwrap_or_default();
                self.push(out, value.as_bytes(), key, line)
            }
            Some(b) if is_name_start(b) => {
                let name = self.name();
                let value = resolve(&name).unwrap_or_default();
                self.push(out, value.as_bytes(), key, line)
            }
            _ => self.push(out, b"$", key, line),
        }
    }

    fn value(
        &mut self,
        key: &str,
        line: u32,
        resolve: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, DotenvError> {
        let mut out = Vec::new();
        match self.peek() {
            Some(b'\'') => {
                self.pos += 1;
                let start = self.pos;
                loop {
                    match self.peek() {
                        None => {
                            return Err(
                                self.error(line, format!("{key}: the ' quote is not closed"))
                            );
                        }
                        Some(b'\'') => break,
                        Some(b'\n') => self.newline(),
                        Some(_) => self.pos += 1,
                    }
                }
                let literal = &self.bytes[start..self.pos];
                self.pos += 1;
                self.push(&mut out, literal, key, line)?;
                self.after_quote(key)?;
            }
            Some(b'"') => {
                self.pos += 1;
                loop {
                    let Some(b) = self.peek() else {
                        return Err(self.error(line, format!("{key}: the \" quote is not closed")));
                    };
                    match b {
                        b'"' => {
                            self.pos += 1;
                            break;
                        }
                        b'\\' => {
                            self.pos += 1;
                            let escaped: &[u8] = match self.peek() {
                                Some(b'n') => b"\n",
                                Some(b'r') => b"\r",
                                Some(b't') => b"\t",
                                Some(b'\\') => b"\\",
                                Some(b'"') => b"\"",
                                Some(b'$') => b"$",
                                _ => {
                                    self.push(&mut out, b"\\", key, line)?;
                                    continue;
                                }
                            };
                            self.pos += 1;
                            self.push(&mut out, escaped, key, line)?;
                        }
                        b'$' => {
                            self.pos += 1;
                            self.reference(&mut out, key, line, resolve)?;
                        }
                        b'\n' => {
                            self.newline();
                            self.push(&mut out, b"\n", key, line)?;
                        }
                        _ => {
                            // Copy the run up to the next special byte at once.
                            let start = self.pos;
                            while self
                                .peek()
                                .is_some_and(|b| !matches!(b, b'"' | b'\\' | b'$' | b'\n'))
                            {
                                self.pos += 1;
                            }
                            let run = &self.bytes[start..self.pos];
                            self.push(&mut out, run, key, line)?;
                        }
                    }
                }
                self.after_quote(key)?;
            }
            _ => {
                // Unquoted: to the end of the line or a ` #` comment.
                let mut blank_before = true;
                while let Some(b) = self.peek() {
                    match b {
                        b'\n' => break,
                        b'#' if blank_before => {
                            self.skip_to_eol();
                            break;
                        }
                        b'$' => {
                            self.pos += 1;
                            self.reference(&mut out, key, line, resolve)?;
                            blank_before = false;
                        }
                        _ => {
                            self.pos += 1;
                            self.push(&mut out, &[b], key, line)?;
                            blank_before = is_blank(b);
                        }
                    }
                }
                while out.last().is_some_and(|&b| is_blank(b)) {
                    out.pop();
                }
            }
        }
        String::from_utf8(out)
            .map_err(|_| self.error(line, format!("{key}: the value is not UTF-8")))
    }

    /// Only blanks and a comment may follow a closing quote.
    fn after_quote(&mut self, key: &str) -> Result<(), DotenvError> {
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n') => Ok(()),
            Some(b'#') => {
                self.skip_to_eol();
                Ok(())
            }
            Some(_) => {
                Err(self
                    .error(self.line, format!("{key}: unexpected text after the closing quote")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text, |name| (name == "HOME").then(|| "/home/u".to_owned())).expect("parses")
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn err(text: &str) -> DotenvError {
        parse(text, |_| None).expect_err("fails")
    }

    #[test]
    fn comments_blank_lines_and_export() {
        let text = "# a comment\n\n  # indented comment\nexport A=1\nB = two words  # note\n";
        assert_eq!(ok(text), pairs(&[("A", "1"), ("B", "two words")]));
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(ok("S='$HOME \\n # x'"), pairs(&[("S", "$HOME \\n # x")]));
        assert_eq!(ok("S='a\nb'  # c\n"), pairs(&[("S", "a\nb")]));
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(
            ok("D=\"a\\tb\\n\\\"q\\\" \\$HOME \\\\ \\x\""),
            pairs(&[("D", "a\tb\n\"q\" $HOME \\ \\x")])
        );
        assert_eq!(ok("M=\"line1\nline2\" # c"), pairs(&[("M", "line1\nline2")]));
    }

    #[test]
    fn references_see_earlier_keys_then_the_lookup() {
        let text = "A=x\nB=${A}-$A-${HOME}-${NOPE}-$-$1\nA=y\nC=\"${A}${B}\"\n";
        assert_eq!(
            ok(text),
            pairs(&[("A", "y"), ("B", "x-x-/home/u--$-$1"), ("C", "yx-x-/home/u--$-$1")])
        );
        // A later key is not seen by an earlier line.
        assert_eq!(ok("A=${B}\nB=1"), pairs(&[("A", ""), ("B", "1")]));
    }

    #[test]
    fn unquoted_hash_needs_a_blank_before_it() {
        assert_eq!(ok("U=http://h/#frag # c"), pairs(&[("U", "http://h/#frag")]));
        assert_eq!(ok("E=\nF= # only a comment"), pairs(&[("E", ""), ("F", "")]));
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        let e = err("A=1\n\nnot a pair secret\n");
        assert_eq!(e.line, 3);
        assert!(!e.message.contains("secret"), "{e:?}");
        assert_eq!(err("A=1\n1B=2").line, 2);
        assert_eq!(err("A=1\nB='secret\n\n").line, 2);
        assert_eq!(err("A=\"secret\"tail").line, 1);
        assert!(!err("A=\"secret\"tail").message.contains("secret"));
        assert_eq!(err("A=${secret").line, 1);
        assert_eq!(err("=x").line, 1);
        assert_eq!(err("export =x").line, 1);
    }

    #[test]
    fn expansion_is_bounded() {
        // Each line doubles the previous value: without a bound, 2^40 bytes.
        let mut text = "A0=xxxxxxxxxxxxxxxx\n".to_owned();
        for i in 1..40 {
            text.push_str(&format!("A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
        }
        let e = err(&text);
        assert!(e.message.contains("longer"), "{e:?}");
    }

    #[test]
    fn crlf_and_export_as_a_key() {
        assert_eq!(ok("A=1\r\nB=\"2\"\r\n"), pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(ok("export=1"), pairs(&[("export", "1")]));
    }
}
