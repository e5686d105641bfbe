//! TDS packet framing: reading whole messages (reassembled from packets up to the
//! end-of-message bit) and splitting responses into packets of the negotiated size.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Length of a TDS packet header.
pub(crate) const HEADER_LEN: usize = 8;

/// Packet types used here (MS-TDS 2.2.3.1.1).
pub(crate) mod ptype {
    pub const SQL_BATCH: u8 = 1;
    pub const RPC: u8 = 3;
    pub const REPLY: u8 = 4;
    pub const ATTENTION: u8 = 6;
    pub const TRANSACTION_MANAGER: u8 = 14;
    pub const LOGIN7: u8 = 16;
    pub const PRELOGIN: u8 = 18;
}

/// Largest request message accepted (a malicious or broken client cannot make the
/// server buffer more than this).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One reassembled client message.
#[derive(Debug)]
pub(crate) struct Message {
    pub ty: u8,
    pub payload: Vec<u8>,
}

/// Reads one message. `Ok(None)` on a clean end-of-file between messages; an error
/// for a malformed packet or an end-of-file inside a message.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Message>> {
    let mut payload = Vec::new();
    let mut ty = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if ty.is_none() {
            // Clean EOF is only allowed before the first byte of a message.
            match r.read(&mut header[..1]).await? {
                0 => return Ok(None),
                _ => r.read_exact(&mut header[1..]).await?,
            };
        } else {
            r.read_exact(&mut header).await?;
        }
        let pty = header[0];
        if !matches!(pty, 1 | 2 | 3 | 6 | 7 | 14 | 16 | 17 | 18) {
            return Err(bad("unknown packet type"));
        }
        let status = header[1];
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if len < HEADER_LEN {
            return Err(bad("packet length shorter than its header"));
        }
        match ty {
            None => ty = Some(pty),
            Some(t) if t != pty => return Err(bad("packet type changed inside a message")),
            Some(_) => {}
        }
        let body = len - HEADER_LEN;
        if payload.len() + body > MAX_MESSAGE {
            return Err(bad("message too large"));
        }
        let start = payload.len();
        payload.resize(start + body, 0);
        r.read_exact(&mut payload[start..]).await?;
        if status & 0x01 != 0 {
            return Ok(Some(Message { ty: pty, payload }));
        }
    }
}

pub(crate) fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Splits a token stream into reply packets of at most `packet_size` bytes.
/// `last` says whether the final packet carries the end-of-message bit.
pub(crate) fn frame(payload: &[u8], packet_size: usize, spid: u16, last: bool) -> Vec<u8> {
    let chunk = packet_size.saturating_sub(HEADER_LEN).max(1);
    let mut out = Vec::with_capacity(payload.len() + (payload.len() / chunk + 1) * HEADER_LEN);
    let mut id: u8 = 1;
    let mut pieces = payload.chunks(chunk).peekable();
    if pieces.peek().is_none() {
        push_packet(&mut out, &[], spid, id, last);
        return out;
    }
    while let Some(piece) = pieces.next() {
        let is_last = pieces.peek().is_none();
        push_packet(&mut out, piece, spid, id, is_last && last);
        id = id.wrapping_add(1);
    }
    out
}

fn push_packet(out: &mut Vec<u8>, piece: &[u8], spid: u16, id: u8, eom: bool) {
    let len = (piece.len() + HEADER_LEN) as u16;
    out.push(ptype::REPLY);
    out.push(if eom { 0x01 } else { 0x00 });
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&spid.to_be_bytes());
    out.push(id);
    out.push(0);
    out.extend_from_slice(piece);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_packet_size() {
        let payload = vec![7u8; 20];
        let out = frame(&payload, 16, 51, true);
        // 20 bytes in chunks of 8 → 3 packets.
        assert_eq!(out.len(), 20 + 3 * HEADER_LEN);
        assert_eq!(out[1], 0);
        assert_eq!(out[16 + 1], 0);
        assert_eq!(out[32 + 1], 1);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 51);
    }

    #[tokio::test]
    async fn reassembles_messages() {
        let mut wire = Vec::new();
        for (i, eom) in [(1u8, false), (2u8, true)] {
            wire.extend_from_slice(&[1, eom as u8, 0, 10, 0, 0, i, 0, i, i]);
        }
        let mut r = &wire[..];
        let m = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(m.ty, 1);
        assert_eq!(m.payload, vec![1, 1, 2, 2]);
        assert!(read_message(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_short_length() {
        let wire = [1u8, 1, 0, 3, 0, 0, 0, 0];
        let mut r = &wire[..];
        assert!(read_message(&mut r).await.is_err());
    }
}
