//! How process names become the kernel's words: a comm is 16 NUL-padded bytes,
//! compared as two words under a mask.

/// The kernel keeps 15 bytes of a process name plus a NUL.
pub const COMM_LEN: usize = 15;

/// Packs names the way the kernel stores comm: 16 NUL-padded bytes as two words.
pub fn name_words(name: &[u8]) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name);
    comm_words(bytes)
}

/// A comm's 16 bytes as the two words the BPF program compares.
fn comm_words(bytes: [u8; 16]) -> [u64; 2] {
    [
        u64::from_ne_bytes(bytes[..8].try_into().unwrap()),
        u64::from_ne_bytes(bytes[8..].try_into().unwrap()),
    ]
}

/// Masks the bytes of a comm that a name decides: its own and the NUL after it.
pub fn name_mask(name: &[u8]) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    let decided = (name.len() + 1).min(16);
    bytes[..decided].fill(0xff);
    comm_words(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_ignores_what_follows_its_nul() {
        // 5.10 leaves an older name's tail after the NUL: "httpd\0r/0".
        let mut comm = [0u8; 16];
        comm[..9].copy_from_slice(b"httpd\0r/0");
        let words = name_words(&comm[..15]);
        let (name, mask) = (name_words(b"httpd"), name_mask(b"httpd"));
        assert_eq!([words[0] & mask[0], words[1] & mask[1]], name);
        // The NUL is decided: "http" does not match "httpd".
        let (short, mask) = (name_words(b"http"), name_mask(b"http"));
        assert_ne!([words[0] & mask[0], words[1] & mask[1]], short);
        assert_eq!(name_mask(b"fifteen-bytes-x"), [u64::MAX, u64::MAX]);
    }

    #[test]
    fn names_pack_like_comm() {
        let w = name_words(b"redis-server");
        let mut bytes = w[0].to_ne_bytes().to_vec();
        bytes.extend(w[1].to_ne_bytes());
        assert_eq!(&bytes[..12], b"redis-server");
        assert!(bytes[12..].iter().all(|&b| b == 0));
    }
}
