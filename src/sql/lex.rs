//! The one T-SQL lexer the crate's text scans share: words and punctuation outside string
//! literals, quoted names and comments, with T-SQL's rules for each (block comments nest,
//! a doubled closing quote is an escaped one). The scans that decide what a request may
//! have done — the session state it leaves ([`SessionEffects`](super::session_effects))
//! and whether it is one atomic statement
//! ([`is_single_dml`](crate::classify::rollback::is_single_dml)) — must read the text as
//! the server does, or a statement hidden in what one of them took for a comment escapes it.

/// A lexical token: a word (identifier, keyword, `@var`, `#temp`; a quoted identifier
/// stands as the word `""`), or one punctuation byte. String literals and comments are
/// skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Word(&'a str),
    Punct(u8),
}

/// The tokens of a text, in order (no allocation: words borrow from the text).
#[derive(Clone)]
pub(crate) struct Tokens<'a> {
    text: &'a str,
    at: usize,
    unterminated: bool,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Tokens {
            text,
            at: 0,
            unterminated: false,
        }
    }

    /// Whether a literal, quoted name or block comment ran to the end of the text (the
    /// server rejects such a text whole; a scan that must not guess can refuse it).
    pub(crate) fn unterminated(&self) -> bool {
        self.unterminated
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'#' | b'$') || b >= 0x80
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let bytes = self.text.as_bytes();
        loop {
            let b = *bytes.get(self.at)?;
            match b {
                b if b.is_ascii_whitespace() => self.at += 1,
                b'-' if bytes.get(self.at + 1) == Some(&b'-') => {
                    while self.at < bytes.len() && bytes[self.at] != b'\n' {
                        self.at += 1;
                    }
                }
                b'/' if bytes.get(self.at + 1) == Some(&b'*') => {
                    // Block comments nest in T-SQL.
                    let mut depth = 0usize;
                    loop {
                        if self.at >= bytes.len() {
                            self.unterminated = true;
                            break;
                        }
                        if bytes[self.at..].starts_with(b"/*") {
                            depth += 1;
                            self.at += 2;
                        } else if bytes[self.at..].starts_with(b"*/") {
                            depth -= 1;
                            self.at += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            self.at += 1;
                        }
                    }
                }
                b'\'' | b'"' | b'[' => {
                    // A literal or a quoted identifier: skipped whole (a doubled closing
                    // character is an escaped one). An identifier stands for a word.
                    let close = if b == b'[' { b']' } else { b };
                    self.at += 1;
                    loop {
                        if self.at >= bytes.len() {
                            self.unterminated = true;
                            break;
                        }
                        if bytes[self.at] == close {
                            if bytes.get(self.at + 1) == Some(&close) {
                                self.at += 2;
                                continue;
                            }
                            break;
                        }
                        self.at += 1;
                    }
                    self.at = (self.at + 1).min(bytes.len());
                    if b != b'\'' {
                        return Some(Token::Word("\"\""));
                    }
                }
                b if is_word_byte(b) => {
                    let start = self.at;
                    while self.at < bytes.len() && is_word_byte(bytes[self.at]) {
                        self.at += 1;
                    }
                    // Word bytes are ASCII or whole UTF-8 sequences, so this is a boundary.
                    return Some(Token::Word(&self.text[start..self.at]));
                }
                b => {
                    self.at += 1;
                    return Some(Token::Punct(b));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<&str> {
        Tokens::new(sql)
            .filter_map(|t| match t {
                Token::Word(w) => Some(w),
                Token::Punct(_) => None,
            })
            .collect()
    }

    #[test]
    fn block_comments_nest_as_in_t_sql() {
        // The first `*/` closes only the inner comment: the quote is still commented out,
        // and the DELETE after the outer `*/` is a statement.
        let sql = "UPDATE a SET b = 1 /* /* */ ' */ DELETE FROM audit --'";
        assert_eq!(
            words(sql),
            ["UPDATE", "a", "SET", "b", "1", "DELETE", "FROM", "audit"]
        );
        assert!(!Tokens::new(sql).unterminated());
    }

    #[test]
    fn literals_and_quoted_names_hide_their_text() {
        assert_eq!(
            words("SELECT 'it''s /* not' AS [a]]b], \"c\" -- x\nFROM t"),
            ["SELECT", "AS", "\"\"", "\"\"", "FROM", "t"]
        );
        assert_eq!(
            words("SELECT N'été' FROM été"),
            ["SELECT", "N", "FROM", "été"]
        );
    }

    #[test]
    fn unterminated_literals_and_comments_are_reported() {
        for sql in [
            "SELECT 'open",
            "SELECT 1 /* open /* */",
            "SELECT [open",
            "SELECT \"x",
        ] {
            let mut tokens = Tokens::new(sql);
            tokens.by_ref().for_each(drop);
            assert!(tokens.unterminated(), "{sql}");
        }
        let mut tokens = Tokens::new("SELECT 'a' /* b */ -- c");
        tokens.by_ref().for_each(drop);
        assert!(!tokens.unterminated());
    }
}
