//! Reads the TDS requests a connection writes, for what they show about transactions:
//! each SQL batch, RPC and transaction-manager request carries, in its ALL_HEADERS, the
//! transaction descriptor tiberius holds (non-zero while a transaction is open), and its
//! text may mention `COMMIT`. The summary ([`TxEvidence`]) feeds the rule in
//! [`classify::rollback`](crate::classify::rollback).
//!
//! Bytes that do not parse as TDS packets (TLS after the handshake, or anything
//! unexpected) make the evidence unreadable for the rest of the connection's life.

use crate::classify::rollback::TxEvidence;

const HEADER_LEN: usize = 8;
const SQL_BATCH: u8 = 0x01;
const RPC: u8 = 0x03;
const TRANSACTION_MANAGER: u8 = 0x0E;
/// Every packet type a client sends (MS-TDS 2.2.3.1.1).
const CLIENT_TYPES: &[u8] = &[0x01, 0x02, 0x03, 0x06, 0x07, 0x0E, 0x10, 0x11, 0x12];
/// Payload offsets of the first header of ALL_HEADERS: its type (2 bytes) and the
/// transaction descriptor (8 bytes).
const DESC_TYPE_AT: usize = 8;
const DESC_AT: usize = 10;
const DESC_END: usize = 18;
/// "COMMIT" in UTF-16LE, matched case-insensitively.
const COMMIT: &[u8; 6] = b"COMMIT";

/// Incremental parser over the bytes a connection writes.
#[derive(Debug, Default)]
pub(crate) struct WireTx {
    /// Bytes were seen that are not TDS: no more evidence from this connection.
    opaque: bool,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Payload bytes left in the current packet.
    remaining: usize,
    /// The current packet is the last of its message.
    eom: bool,
    /// A message is being read (its last packet not finished yet).
    in_message: bool,
    msg_type: u8,
    /// Payload bytes of the current message read so far.
    msg_offset: usize,
    desc_type: [u8; 2],
    desc: [u8; 8],
    /// Progress through "COMMIT" in UTF-16LE (counted in bytes).
    commit_progress: usize,
    mentions_commit: bool,
    evidence: TxEvidence,
}

impl WireTx {
    /// Starts a new attempt's evidence (the parser state carries on: the stream does).
    pub(crate) fn reset_evidence(&mut self) {
        self.evidence = TxEvidence::default();
    }

    /// The evidence since the last [`reset_evidence`](Self::reset_evidence).
    pub(crate) fn evidence(&self) -> TxEvidence {
        TxEvidence {
            readable: !self.opaque,
            ..self.evidence
        }
    }

    /// Feeds bytes the kernel accepted, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.opaque {
            if self.remaining == 0 {
                let take = (HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == HEADER_LEN {
                    self.header_len = 0;
                    self.start_packet();
                }
                continue;
            }
            let take = self.remaining.min(bytes.len());
            self.payload(&bytes[..take]);
            self.remaining -= take;
            bytes = &bytes[take..];
            if self.remaining == 0 {
                self.end_packet();
            }
        }
    }

    fn start_packet(&mut self) {
        let [ty, status, hi, lo, ..] = self.header;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if !CLIENT_TYPES.contains(&ty)
            || len < HEADER_LEN
            || (self.in_message && ty != self.msg_type)
        {
            self.opaque = true;
            return;
        }
        if !self.in_message {
            self.in_message = true;
            self.msg_type = ty;
            self.msg_offset = 0;
            self.desc_type = [0; 2];
            self.desc = [0; 8];
            self.commit_progress = 0;
            self.mentions_commit = false;
        }
        self.eom = status & 0x01 != 0;
        self.remaining = len - HEADER_LEN;
        if self.remaining == 0 {
            self.end_packet();
        }
    }

    /// Reads a run of payload bytes: the descriptor where the run covers it, and
    /// "COMMIT" until the message is known to mention it. Bytes that cannot start the
    /// word are skipped with `memchr`, so a request costs little more than a vector scan.
    fn payload(&mut self, chunk: &[u8]) {
        let start = self.msg_offset;
        if start < DESC_END {
            let end = (start + chunk.len()).min(DESC_END);
            for at in start.max(DESC_TYPE_AT)..end {
                let b = chunk[at - start];
                if at < DESC_AT {
                    self.desc_type[at - DESC_TYPE_AT] = b;
                } else {
                    self.desc[at - DESC_AT] = b;
                }
            }
        }
        self.msg_offset = start.saturating_add(chunk.len());
        let mut rest = chunk;
        while !rest.is_empty() && !self.mentions_commit {
            if self.commit_progress == 0 {
                match memchr::memchr2(b'C', b'c', rest) {
                    Some(i) => rest = &rest[i..],
                    None => return,
                }
            }
            self.commit_byte(rest[0]);
            rest = &rest[1..];
        }
    }

    /// One step through "COMMIT" in UTF-16LE: each letter is followed by a zero byte.
    fn commit_byte(&mut self, b: u8) {
        let p = self.commit_progress;
        let matches = if p.is_multiple_of(2) {
            b.to_ascii_uppercase() == COMMIT[p / 2]
        } else {
            b == 0
        };
        self.commit_progress = if matches {
            p + 1
        } else if b.to_ascii_uppercase() == COMMIT[0] {
            1
        } else {
            0
        };
        if self.commit_progress == 2 * COMMIT.len() {
            self.mentions_commit = true;
            self.commit_progress = 0;
        }
    }

    fn end_packet(&mut self) {
        if !self.eom {
            return;
        }
        self.in_message = false;
        if !matches!(self.msg_type, SQL_BATCH | RPC | TRANSACTION_MANAGER) {
            return;
        }
        // tiberius always sends the transaction-descriptor header first (type 2).
        let tx = if self.desc_type == [2, 0] {
            u64::from_le_bytes(self.desc)
        } else {
            self.opaque = true;
            return;
        };
        let ev = &mut self.evidence;
        ev.requests = ev.requests.saturating_add(1);
        ev.may_commit |= self.mentions_commit || self.msg_type == TRANSACTION_MANAGER;
        if tx != 0 {
            if ev.first_tx == 0 {
                ev.first_tx = tx;
            } else if ev.first_tx != tx {
                ev.several_tx = true;
            }
        }
        ev.last_tx = tx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQL batch as tiberius frames it: ALL_HEADERS with the descriptor, then UTF-16LE.
    fn batch(text: &str, tx: u64, packet_size: usize) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&22u32.to_le_bytes());
        payload.extend_from_slice(&18u32.to_le_bytes());
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&tx.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        for u in text.encode_utf16() {
            payload.extend_from_slice(&u.to_le_bytes());
        }
        let chunk = packet_size - HEADER_LEN;
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            out.push(SQL_BATCH);
            out.push(u8::from(last));
            out.extend_from_slice(&((piece.len() + HEADER_LEN) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 1, 0]);
            out.extend_from_slice(piece);
        }
        out
    }

    fn feed_in(w: &mut WireTx, bytes: &[u8], step: usize) {
        for piece in bytes.chunks(step) {
            w.feed(piece);
        }
    }

    #[test]
    fn descriptors_and_commits_are_read_across_packets_and_writes() {
        for step in [1, 3, 7, 4096] {
            let mut w = WireTx::default();
            feed_in(&mut w, &batch("BEGIN TRANSACTION", 0, 512), step);
            feed_in(&mut w, &batch(&"x".repeat(600), 9, 512), step);
            let ev = w.evidence();
            assert!(ev.readable);
            assert_eq!((ev.requests, ev.first_tx, ev.last_tx), (2, 9, 9), "{step}");
            assert!(!ev.may_commit && !ev.several_tx);
            feed_in(
                &mut w,
                &batch("update t set a = 1; commit tran", 9, 512),
                step,
            );
            assert!(w.evidence().may_commit, "{step}");
            w.reset_evidence();
            feed_in(&mut w, &batch("SELECT 1", 0, 512), step);
            feed_in(&mut w, &batch("SELECT 2", 10, 512), step);
            feed_in(&mut w, &batch("SELECT 3", 11, 512), step);
            let ev = w.evidence();
            assert_eq!((ev.requests, ev.last_tx), (3, 11));
            assert!(ev.several_tx && !ev.may_commit);
        }
    }

    #[test]
    fn a_commit_is_found_after_a_false_start_and_not_without_its_zero_bytes() {
        for step in [1, 2, 5, 4096] {
            let mut w = WireTx::default();
            feed_in(&mut w, &batch("select 'COMMCOMMIT'", 0, 512), step);
            assert!(w.evidence().may_commit, "{step}");
            w.reset_evidence();
            // "COMMIT" as single bytes (not UTF-16LE) is not the word.
            let mut ascii = batch("x", 0, 512);
            let at = ascii.len() - 2;
            ascii.splice(at.., b"COMMIT".iter().copied());
            let len = (ascii.len() as u16).to_be_bytes();
            ascii[2..4].copy_from_slice(&len);
            feed_in(&mut w, &ascii, step);
            let ev = w.evidence();
            assert_eq!(ev.requests, 1, "{step}");
            assert!(!ev.may_commit, "{step}");
        }
    }

    #[test]
    fn bytes_that_are_not_tds_make_the_evidence_unreadable() {
        let mut w = WireTx::default();
        w.feed(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        w.feed(&batch("SELECT 1", 5, 512));
        assert!(!w.evidence().readable);
    }
}
