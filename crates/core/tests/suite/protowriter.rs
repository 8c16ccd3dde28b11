//! A hand-written protobuf writer, independent of prost, for crafting bytes the builder
//! refuses to produce (unknown enum values, unknown constraint kinds, foreign fields) and
//! for checking that the wire format is what token.proto says.

#[derive(Default, Clone)]
pub struct Msg(pub Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A varint field (uint32, uint64, bool, enum); proto3 omits zero.
    pub fn uint(mut self, field: u32, v: u64) -> Msg {
        if v != 0 {
            self.tag(field, 0);
            self.varint(v);
        }
        self
    }

    /// A length-delimited field (bytes, string, message); proto3 omits empty.
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Msg {
        if !b.is_empty() {
            self.tag(field, 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
        }
        self
    }

    /// A length-delimited field written even when empty (a message with no fields).
    pub fn message(mut self, field: u32, m: &Msg) -> Msg {
        self.tag(field, 2);
        self.varint(m.0.len() as u64);
        self.0.extend_from_slice(&m.0);
        self
    }
}

/// A capability `resource`, `actions`, with the given encoded constraints.
pub fn capability(resource: &str, actions: &[&str], constraints: &[Msg]) -> Msg {
    let mut m = Msg::default().bytes(1, resource.as_bytes());
    for a in actions {
        m = m.bytes(2, a.as_bytes());
    }
    for c in constraints {
        m = m.message(3, c);
    }
    m
}

/// The fields of a root link body, in field order, for hand encoding.
pub struct RootBody<'a> {
    pub id: [u8; 16],
    pub issuer_key: [u8; 32],
    pub holder_key: [u8; 32],
    pub holder_agent: &'a str,
    pub task_id: [u8; 16],
    pub capabilities: Vec<Msg>,
    pub not_before_ms: u64,
    pub expires_at_ms: u64,
    pub max_depth: u32,
    pub kind: u64,
}

impl RootBody<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Msg::default()
            .bytes(1, &self.id)
            .bytes(3, &self.issuer_key)
            .bytes(4, &self.holder_key)
            .bytes(5, self.holder_agent.as_bytes())
            .bytes(6, &self.task_id);
        for c in &self.capabilities {
            m = m.message(7, c);
        }
        m.uint(8, self.not_before_ms)
            .uint(9, self.expires_at_ms)
            .uint(11, u64::from(self.max_depth))
            .uint(12, self.kind)
            .0
    }
}

/// A one-link chain envelope around `body` and `signature`.
pub fn single_link_chain(version: u64, body: &[u8], signature: &[u8]) -> Vec<u8> {
    let link = Msg::default().bytes(1, body).bytes(2, signature);
    Msg::default().uint(1, version).message(2, &link).0
}

/// The parts of one link for [`chain_envelope`].
pub struct LinkParts<'a> {
    pub body: &'a [u8],
    pub signature: &'a [u8],
    pub seal: Option<(&'a [u8], &'a [u8])>,
}

/// Encodes a chain envelope by hand.
pub fn chain_envelope(version: u64, links: &[LinkParts<'_>]) -> Vec<u8> {
    let mut m = Msg::default().uint(1, version);
    for l in links {
        let mut link = Msg::default().bytes(1, l.body).bytes(2, l.signature);
        if let Some((key, sig)) = l.seal {
            link = link.message(3, &Msg::default().bytes(1, key).bytes(2, sig));
        }
        m = m.message(2, &link);
    }
    m.0
}

/// The parts of every link of `chain`.
pub fn parts(chain: &mandate_core::Chain) -> Vec<LinkParts<'_>> {
    chain
        .links()
        .iter()
        .map(|l| LinkParts {
            body: l.body_bytes(),
            signature: l.signature().as_bytes(),
            seal: l
                .seal()
                .map(|s| (&s.key.as_bytes()[..], &s.signature.as_bytes()[..])),
        })
        .collect()
}
