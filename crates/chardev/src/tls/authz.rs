//! `authz-simple` and `authz-list`: who may use a TLS server chardev, by the
//! peer's certificate DN (see [`super::dn`]). Matching is QEMU 7.2's:
//! `authz-simple` compares the whole string byte for byte; `authz-list`
//! takes the first rule that matches (`exact`, or `glob` with `*` and `?`
//! as GLib's `g_pattern_match_simple`) and else its default policy.
// Hand-written: the glob is GLib's simple pattern (only `*` and `?`, no
// escapes or classes, anchored), which the glob crates do not reproduce.

/// `allow` or `deny` (QEMU's `QAuthZListPolicy`, in its enum order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse.
    #[default]
    Deny,
    /// Let in.
    Allow,
}

impl Policy {
    /// QAPI names, in QAPI order.
    pub const NAMES: &'static [&'static str] = &["deny", "allow"];

    /// The QAPI name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How a rule's `match` is compared (QEMU's `QAuthZListFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The whole identity, byte for byte.
    #[default]
    Exact,
    /// GLib's simple pattern: `*` any run, `?` one character.
    Glob,
}

impl Format {
    /// QAPI names, in QAPI order.
    pub const NAMES: &'static [&'static str] = &["exact", "glob"];

    /// The QAPI name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One `authz-list` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The identity or pattern.
    pub pattern: String,
    /// What a match decides.
    pub policy: Policy,
    /// How `pattern` is compared; `None` when the rule did not say (the
    /// default, `exact`; QEMU leaves the key out when it lists the rules).
    pub format: Option<Format>,
}

impl Rule {
    fn matches(&self, identity: &str) -> bool {
        match self.format.unwrap_or_default() {
            Format::Exact => self.pattern == identity,
            Format::Glob => glob_match(&self.pattern, identity),
        }
    }
}

/// An authorization object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authz {
    /// `authz-simple`: one identity.
    Simple {
        /// The identity let in.
        identity: String,
    },
    /// `authz-list`: rules and a default.
    List {
        /// The decision when no rule matches.
        policy: Policy,
        /// The rules, first match wins.
        rules: Vec<Rule>,
    },
}

impl Authz {
    /// Whether `identity` is let in.
    pub fn is_allowed(&self, identity: &str) -> bool {
        match self {
            Authz::Simple { identity: id } => id == identity,
            Authz::List { policy, rules } => {
                rules
                    .iter()
                    .find(|r| r.matches(identity))
                    .map_or(*policy, |r| r.policy)
                    == Policy::Allow
            }
        }
    }
}

/// GLib's `g_pattern_match_simple`: `*` matches any run of characters
/// (none too), `?` exactly one character; everything else itself; the
/// pattern spans the whole string.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Iterative matcher with one backtrack point per `*` (linear memory,
    // O(n*m) worst case, no recursion).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_glibs_simple_pattern() {
        let yes = [
            ("*", ""),
            ("*", "anything"),
            ("a*", "a"),
            ("*CN=client.qchar.test", "C=GB,O=x,CN=client.qchar.test"),
            ("C=GB,*,CN=?lient*", "C=GB,O=x,CN=client.qchar.test"),
            ("?", "ö"),
            ("a*b*c", "aXXbYYc"),
            ("**", "x"),
            ("a\\*", "a\\xyz"),
            ("[ab]", "[ab]"),
        ];
        for (p, s) in yes {
            assert!(glob_match(p, s), "{p:?} should match {s:?}");
        }
        let no = [
            ("", "x"),
            ("?", ""),
            ("?", "ab"),
            ("a*", "ba"),
            ("*CN=client", "CN=client.qchar.test"),
            ("a*b*c", "aXXbYY"),
            ("[ab]", "a"),
            ("a\\*", "a*"),
        ];
        for (p, s) in no {
            assert!(!glob_match(p, s), "{p:?} should not match {s:?}");
        }
        // No exponential blow-up on a hostile pattern.
        let p = "*a".repeat(50);
        assert!(!glob_match(&p, &"a".repeat(49)));
    }

    #[test]
    fn list_first_match_wins_then_default() {
        let l = Authz::List {
            policy: Policy::Deny,
            rules: vec![
                Rule {
                    pattern: "CN=bad".into(),
                    policy: Policy::Deny,
                    format: None,
                },
                Rule {
                    pattern: "CN=*".into(),
                    policy: Policy::Allow,
                    format: Some(Format::Glob),
                },
            ],
        };
        assert!(!l.is_allowed("CN=bad"));
        assert!(l.is_allowed("CN=good"));
        assert!(!l.is_allowed("O=x"));
        let open = Authz::List {
            policy: Policy::Allow,
            rules: vec![],
        };
        assert!(open.is_allowed("anything"));
        let s = Authz::Simple {
            identity: "CN=a".into(),
        };
        assert!(s.is_allowed("CN=a"));
        assert!(!s.is_allowed("CN=a "));
        // An exact rule does not treat `*` as special.
        let exact = Authz::List {
            policy: Policy::Deny,
            rules: vec![Rule {
                pattern: "CN=*".into(),
                policy: Policy::Allow,
                format: Some(Format::Exact),
            }],
        };
        assert!(!exact.is_allowed("CN=x"));
        assert!(exact.is_allowed("CN=*"));
    }
}
