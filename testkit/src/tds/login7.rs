//! LOGIN7 parsing (MS-TDS 2.2.6.4).

use super::tokens::{utf16_lossy, Reader};

/// The parts of a LOGIN7 message the server uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Login7 {
    pub tds_version: u32,
    pub packet_size: u32,
    pub hostname: String,
    pub user: String,
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    pub database: String,
    /// Integrated (SSPI) authentication was requested.
    pub sspi: bool,
    /// The Microsoft Entra ID access token of a FEDAUTH login, if it carries one.
    pub access_token: Option<String>,
}

/// Whether a session may use the database a client names (in LOGIN7 or `USE`): the
/// server's one database, by name (case-insensitive), or `master` — the default of
/// many clients and tools, which every SQL Server has — which is mapped onto it, or
/// none at all.
pub(crate) fn database_accepted(requested: &str, configured: &str) -> bool {
    let requested = requested.trim_matches(|c| c == '[' || c == ']');
    requested.is_empty()
        || requested.eq_ignore_ascii_case(configured)
        || requested.eq_ignore_ascii_case("master")
}

/// Reverses the password obfuscation: XOR with 0xA5, then swap the nibbles.
fn deobfuscate(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|x| {
            let y = x ^ 0xA5;
            y.rotate_left(4)
        })
        .collect()
}

/// Parses a LOGIN7 payload; `None` if it is malformed.
pub(crate) fn parse(payload: &[u8]) -> Option<Login7> {
    let mut r = Reader::new(payload);
    let _length = r.u32le()?;
    let tds_version = r.u32le()?;
    let packet_size = r.u32le()?;
    r.skip(4 + 4 + 4 + 3)?; // prog ver, pid, connection id, flags 1, 2 and type flags
    let flags3 = r.u8()?;
    r.skip(4 + 4)?; // timezone, lcid
                    // Offset/length pairs, in characters, relative to the start of the message.
    let field = |r: &mut Reader<'_>| -> Option<(usize, usize)> {
        Some((r.u16le()? as usize, r.u16le()? as usize))
    };
    let host = field(&mut r)?;
    let user = field(&mut r)?;
    let pass = field(&mut r)?;
    let app = field(&mut r)?;
    let server = field(&mut r)?;
    let ext = field(&mut r)?;
    let _clt_int = field(&mut r)?;
    let _lang = field(&mut r)?;
    let db = field(&mut r)?;
    r.skip(6)?; // client id
    let sspi = field(&mut r)?;
    let text = |(off, chars): (usize, usize)| -> Option<String> {
        let end = off.checked_add(chars.checked_mul(2)?)?;
        Some(utf16_lossy(payload.get(off..end)?))
    };
    let pass_bytes = {
        let (off, chars) = pass;
        let end = off.checked_add(chars.checked_mul(2)?)?;
        deobfuscate(payload.get(off..end)?)
    };
    Some(Login7 {
        tds_version,
        packet_size,
        hostname: text(host)?,
        user: text(user)?,
        password: utf16_lossy(&pass_bytes),
        app_name: text(app)?,
        server_name: text(server)?,
        database: text(db)?,
        // The SSPI length is in bytes; a non-zero length means integrated auth.
        sspi: sspi.1 > 0,
        access_token: super::fedauth::access_token(payload, flags3, ext),
    })
}

/// A LOGIN7 message as a client sends it (user `user`, password `pa55wörd`, database `db`,
/// application `app`, packet size 4096), for tests.
#[cfg(test)]
pub(crate) fn sample() -> Vec<u8> {
    fn obfuscate(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for u in s.encode_utf16() {
            for b in u.to_le_bytes() {
                out.push(b.rotate_left(4) ^ 0xA5);
            }
        }
        out
    }
    let fields = ["host", "user", "", "app", "srv", "", "", "", "db"];
    let mut head = vec![0u8; 36];
    head[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    head[8..12].copy_from_slice(&4096u32.to_le_bytes());
    let mut data = Vec::new();
    let base = 36 + 9 * 4 + 6 + 4 * 3 + 4;
    let mut table = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let bytes = if i == 2 {
            obfuscate("pa55wörd")
        } else {
            f.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
        };
        table.extend_from_slice(&((base + data.len()) as u16).to_le_bytes());
        table.extend_from_slice(&((bytes.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(&bytes);
    }
    table.extend_from_slice(&[0u8; 6]);
    table.extend_from_slice(&[0u8; 12 + 4]);
    let mut msg = head;
    msg.extend_from_slice(&table);
    msg.extend_from_slice(&data);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_login() {
        let msg = sample();
        let l = parse(&msg).unwrap();
        assert_eq!(l.user, "user");
        assert_eq!(l.password, "pa55wörd");
        assert_eq!(l.database, "db");
        assert_eq!(l.app_name, "app");
        assert_eq!(l.packet_size, 4096);
        assert!(!l.sspi);
    }

    #[test]
    fn truncated_login_is_none() {
        assert!(parse(&[0u8; 40]).is_none());
    }
}
