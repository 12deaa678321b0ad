//! Address prefixes (`10.0.0.0/8`, `::1`): the `--peer` filter and `peer=` terms.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 address with the number of leading bits that decide a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// `ADDR` (a single address) or `ADDR/LEN`; host bits below LEN are ignored.
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("prefix length {l:?} is not 0 to {max}"))?,
        };
        // ::ffff:a.b.c.d is how a dual-stack socket (and `ss`) shows an IPv4 peer,
        // which events show as a.b.c.d: the same prefix, in IPv4.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), len >= 96) {
                return Ok(Prefix {
                    addr: IpAddr::V4(v4),
                    len: len - 96,
                });
            }
        }
        Ok(Prefix { addr, len })
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 address counts as its IPv4 address.
    /// The kernel decides this from `words()`; the tests check the two agree.
    #[cfg(test)]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                masked(&p.octets(), self.len) == masked(&a.octets(), self.len)
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                masked(&p.octets(), self.len) == masked(&a.octets(), self.len)
            }
            _ => false,
        }
    }

    /// The kernel filter's form: masked address and mask as four words each, in
    /// network byte order (IPv4 in the first word), and the family.
    pub fn words(&self) -> ([u32; 4], [u32; 4], u8) {
        let (bytes, family) = match self.addr {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (b, AF_INET)
            }
            IpAddr::V6(a) => (a.octets(), AF_INET6),
        };
        let mut ones = [0xffu8; 16];
        ones = masked(&ones, self.len);
        let addr = masked(&bytes, self.len);
        (to_words(addr), to_words(ones), family)
    }

    /// The loopback prefixes, 127.0.0.0/8 and ::1.
    #[cfg(test)]
    pub fn loopback() -> [Prefix; 2] {
        [
            Prefix {
                addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)),
                len: 8,
            },
            Prefix {
                addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                len: 128,
            },
        ]
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The first `len` bits of `bytes` (up to 16 bytes), the rest zero.
fn masked<const N: usize>(bytes: &[u8; N], len: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in bytes.iter().enumerate() {
        let bits = (len as usize).saturating_sub(i * 8).min(8);
        out[i] = if bits == 0 {
            0
        } else {
            b & (0xffu8 << (8 - bits))
        };
    }
    out
}

fn to_words(bytes: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, chunk) in bytes.chunks(4).enumerate() {
        w[i] = u32::from_ne_bytes(chunk.try_into().unwrap());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        assert_eq!(Prefix::parse("10.1.2.3").unwrap().len, 32);
        assert_eq!(Prefix::parse("::1").unwrap().len, 128);
        assert_eq!(Prefix::parse("[::1]").unwrap().to_string(), "::1");
        assert_eq!(
            Prefix::parse("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(Prefix::parse("10.0.0.0/33")
            .unwrap_err()
            .contains("0 to 32"));
        assert!(Prefix::parse("fe80::/129").is_err());
        assert!(Prefix::parse("localhost")
            .unwrap_err()
            .contains("not an IPv4"));
        assert!(Prefix::parse("10.0.0.0/x").is_err());
    }

    #[test]
    fn ipv4_mapped_prefixes_are_ipv4() {
        let p = Prefix::parse("::ffff:127.0.0.1").unwrap();
        assert_eq!((p.to_string(), p.len), ("127.0.0.1".to_string(), 32));
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        assert_eq!(
            Prefix::parse("[::ffff:10.0.0.0]/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Prefix::parse("::ffff:0.0.0.0/96").unwrap().to_string(),
            "0.0.0.0/0"
        );
        // A shorter prefix reaches beyond the mapped range: it stays IPv6.
        assert!(Prefix::parse("::/80").unwrap().addr.is_ipv6());
    }

    #[test]
    fn contains_by_leading_bits() {
        let p = Prefix::parse("127.0.0.0/8").unwrap();
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("127.255.1.2")));
        assert!(!p.contains(ip("128.0.0.1")));
        assert!(!p.contains(ip("::1")));
        // A v4-mapped v6 peer is its IPv4 address.
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        let p = Prefix::parse("10.1.0.0/15").unwrap();
        assert!(p.contains(ip("10.0.255.255")));
        assert!(!p.contains(ip("10.2.0.0")));
        let p = Prefix::parse("fd00::/8").unwrap();
        assert!(p.contains(ip("fd12::1")));
        assert!(!p.contains(ip("fe80::1")));
        assert!(Prefix::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        let [v4, v6] = Prefix::loopback();
        assert!(v4.contains(ip("127.0.0.53")) && v6.contains(ip("::1")));
    }

    /// The kernel's test: the address's words, masked, equal the prefix's.
    fn kernel_contains(p: &Prefix, ip: IpAddr) -> bool {
        let (addr, mask, family) = p.words();
        let (a, _, f) = Prefix::parse(&ip.to_string()).unwrap().words();
        f == family && (0..4).all(|i| a[i] & mask[i] == addr[i])
    }

    #[test]
    fn the_kernels_words_agree_with_contains() {
        let prefixes = [
            "127.0.0.0/8",
            "10.1.0.0/15",
            "fd00::/8",
            "::1",
            "0.0.0.0/0",
            "::/0",
        ];
        let ips = [
            "127.0.0.1",
            "128.0.0.1",
            "10.0.255.255",
            "10.2.0.0",
            "fd12::1",
            "fe80::1",
            "::1",
            "::ffff:127.0.0.1",
            "1.2.3.4",
        ];
        for p in prefixes.map(|p| Prefix::parse(p).unwrap()) {
            for a in ips.map(ip) {
                assert_eq!(kernel_contains(&p, a), p.contains(a), "{p} {a}");
            }
        }
    }

    #[test]
    fn kernel_words_are_network_order() {
        let (addr, mask, family) = Prefix::parse("10.1.0.0/15").unwrap().words();
        assert_eq!(family, AF_INET);
        assert_eq!(addr[0].to_ne_bytes(), [10, 0, 0, 0]);
        assert_eq!(mask[0].to_ne_bytes(), [255, 254, 0, 0]);
        assert_eq!(&addr[1..], &[0, 0, 0]);
        assert_eq!(&mask[1..], &[0, 0, 0]);
        let (addr, mask, family) = Prefix::parse("::1").unwrap().words();
        assert_eq!(family, AF_INET6);
        assert_eq!(addr[3].to_ne_bytes(), [0, 0, 0, 1]);
        assert_eq!(mask, [u32::MAX; 4]);
    }
}
