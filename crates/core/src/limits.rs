//! Size and shape limits, checked before any signature work.

/// Bounds on what a verifier will parse. Defaults follow the product's published limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded chain, in bytes.
    pub max_token_bytes: usize,
    /// Most links in one chain (the root counts).
    pub max_links: usize,
    /// Most capabilities in one link.
    pub max_capabilities: usize,
    /// Most actions in one capability.
    pub max_actions: usize,
    /// Most constraints in one capability.
    pub max_constraints: usize,
    /// Most values in one one-of constraint.
    pub max_values: usize,
    /// Longest resource, action, argument name or text value, in bytes.
    pub max_string_bytes: usize,
    /// Largest encoded invocation proof, in bytes.
    pub max_invocation_bytes: usize,
    /// Most arguments in one invocation.
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_token_bytes: 64 * 1024,
            max_links: 16,
            max_capabilities: 16,
            max_actions: 16,
            max_constraints: 8,
            max_values: 64,
            max_string_bytes: 1024,
            max_invocation_bytes: 16 * 1024,
            max_args: 32,
        }
    }
}
