//! The one T-SQL lexer the crate's text scans share: words and punctuation outside string
//! literals, quoted names and comments, with T-SQL's rules for each (block comments nest,
//! a doubled closing quote is an escaped one). The scans that decide what a request may
//! have done — the session state it leaves ([`SessionEffects`](super::session_effects))
//! and whether it is one atomic statement
//! ([`is_single_dml`](crate::classify::rollback::is_single_dml)) — must read the text as
//! the server does, or a statement hidden in what one of them took for a comment escapes it.

/// A lexical token: a word (identifier, keyword, `@var`, `#temp`; a quoted identifier
/// stands as the word `""`), a number, or one punctuation character (its first byte).
/// String literals and comments are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Word(&'a str),
    Number,
    Punct(u8),
}

/// The tokens of a text, in order (no allocation: words borrow from the text).
#[derive(Clone)]
pub(crate) struct Tokens<'a> {
    text: &'a str,
    at: usize,
    unterminated: bool,
    ambiguous: bool,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Tokens {
            text,
            at: 0,
            unterminated: false,
            ambiguous: false,
        }
    }

    /// Whether the text held a comment whose end depends on a rule this lexer does not
    /// claim to know (a lone CR in a line comment, a line comment inside a block comment):
    /// a scan that must not guess can refuse it.
    pub(crate) fn ambiguous(&self) -> bool {
        self.ambiguous
    }

    /// Whether a literal, quoted name or block comment ran to the end of the text (the
    /// server rejects such a text whole; a scan that must not guess can refuse it).
    pub(crate) fn unterminated(&self) -> bool {
        self.unterminated
    }
}

/// Whether `c` may start a word: T-SQL identifiers start with a letter, `_`, `@` or `#`.
/// A digit starts a number, which ends at the first letter (`1DELETE` is `1` and
/// `DELETE`), and `$` or a currency sign starts a money literal: so neither is part of the
/// word that follows.
fn starts_word(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '_' | '@' | '#')
}

/// Whether `c` may continue a word (after its first character).
fn continues_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')
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
                        // Whether a lone CR ends the comment is not a rule to guess.
                        if bytes[self.at] == b'\r' && bytes.get(self.at + 1) != Some(&b'\n') {
                            self.ambiguous = true;
                        }
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
                        } else if bytes[self.at..].starts_with(b"--") {
                            // Nor whether a line comment inside a block comment hides
                            // its `*/`.
                            self.ambiguous = true;
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
                b if b.is_ascii_digit() || b == b'.' => {
                    // A number (or a decimal point): it ends at the first other byte.
                    while self.at < bytes.len()
                        && (bytes[self.at].is_ascii_digit() || bytes[self.at] == b'.')
                    {
                        self.at += 1;
                    }
                    return Some(Token::Number);
                }
                b => {
                    // `self.at` is always on a character boundary: every step above moves
                    // over ASCII bytes or whole characters.
                    let c = self.text[self.at..].chars().next()?;
                    if starts_word(c) {
                        let start = self.at;
                        let end = self.text[start..]
                            .char_indices()
                            .find(|&(_, c)| !continues_word(c))
                            .map_or(self.text.len(), |(i, _)| start + i);
                        self.at = end;
                        return Some(Token::Word(&self.text[start..end]));
                    }
                    self.at += c.len_utf8();
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
                Token::Number | Token::Punct(_) => None,
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
            ["UPDATE", "a", "SET", "b", "DELETE", "FROM", "audit"]
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
    fn numbers_and_money_signs_end_before_a_word() {
        // T-SQL ends a number at the first letter, and `$` or a currency sign is a money
        // literal: the keyword glued to them is a word of its own.
        assert_eq!(
            words("WHERE id = 1DELETE FROM t"),
            ["WHERE", "id", "DELETE", "FROM", "t"]
        );
        assert_eq!(words("x = $DELETE"), ["x", "DELETE"]);
        assert_eq!(words("x = €DELETE"), ["x", "DELETE"]);
        assert_eq!(words("x = 1.5e3"), ["x", "e3"]);
        // Inside a word, `$` and digits belong to it; non-ASCII letters start and continue it.
        assert_eq!(words("a$b @p1 #t2 été_1"), ["a$b", "@p1", "#t2", "été_1"]);
    }

    #[test]
    fn comments_whose_end_is_a_guess_are_reported() {
        for sql in [
            "UPDATE t SET a = 1 --x\r'y\nDELETE",
            "UPDATE t /* -- */ SET a = 1",
        ] {
            let mut tokens = Tokens::new(sql);
            tokens.by_ref().for_each(drop);
            assert!(tokens.ambiguous(), "{sql:?}");
        }
        for sql in ["UPDATE t SET a = 1 -- c\r\n", "UPDATE t /* - */ SET a = 1"] {
            let mut tokens = Tokens::new(sql);
            tokens.by_ref().for_each(drop);
            assert!(!tokens.ambiguous(), "{sql:?}");
        }
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
