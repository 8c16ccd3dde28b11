//! The policy set in force: loaded from a directory (or the shipped default), replaced
//! whole on reload. Decisions are made by `mandate-policy` (Cedar).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use mandate_policy::{AgentInfo, LoadError, PolicySet, TaskInfo};
use mandate_store::{AgentRecord, TaskRecord};

pub use mandate_policy::{Decision, Obligations};

use crate::error::{ApiError, ErrorReason};

/// A loaded policy set with where and when it came from.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The validated set.
    pub set: PolicySet,
    /// A directory, or `built-in default`.
    pub source: String,
    /// When it was loaded, Unix ms.
    pub loaded_ms: u64,
}

/// The policy set in force and the directory it is reloaded from.
#[derive(Debug)]
pub struct Policies {
    current: RwLock<Arc<LoadedPolicy>>,
    dir: Option<PathBuf>,
}

impl Policies {
    /// Loads `dir`, or the shipped default set when `None`.
    pub fn load(dir: Option<&Path>, now_ms: u64) -> Result<Policies, LoadError> {
        let loaded = read(dir, now_ms)?;
        Ok(Policies {
            current: RwLock::new(Arc::new(loaded)),
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// The set recorded in the store (`files`), reloaded from `dir` on request.
    pub fn from_store(
        files: Vec<(String, String)>,
        dir: Option<&Path>,
        now_ms: u64,
    ) -> Result<Policies, LoadError> {
        let loaded = LoadedPolicy {
            set: PolicySet::from_sources(&files)?,
            source: "the service's set, recorded in the store".into(),
            loaded_ms: now_ms,
        };
        Ok(Policies {
            current: RwLock::new(Arc::new(loaded)),
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// The set in force. Callers keep the `Arc` for the whole decision, so a decision and
    /// the hash it records always match.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the directory again. Does not install the result.
    pub(crate) fn read_again(&self, now_ms: u64) -> Result<LoadedPolicy, ApiError> {
        let Some(dir) = &self.dir else {
            return Err(ApiError::precondition(
                ErrorReason::NoPolicyDir,
                "the coordinator runs the built-in default policy set; start it with --policy-dir to reload from files",
            ));
        };
        read(Some(dir), now_ms).map_err(|e| {
            ApiError::new(
                tonic::Code::InvalidArgument,
                ErrorReason::PolicyInvalid,
                e.to_string(),
            )
        })
    }

    /// Checks the files a caller sent (`*.cedar` names without a path) and makes a set of
    /// them. Does not install the result.
    pub(crate) fn from_files(
        files: Vec<(String, String)>,
        actor: &str,
        now_ms: u64,
    ) -> Result<LoadedPolicy, ApiError> {
        let invalid = |message: String| {
            ApiError::new(
                tonic::Code::InvalidArgument,
                ErrorReason::PolicyInvalid,
                message,
            )
        };
        for (name, _) in &files {
            let stem = name.strip_suffix(".cedar").unwrap_or_default();
            if stem.is_empty()
                || stem.starts_with('.')
                || !stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(invalid(format!(
                    "`{}`: policy file names are `NAME.cedar`, NAME of letters, digits, `-`, `_` and `.`",
                    name.escape_debug()
                )));
            }
        }
        let set = PolicySet::from_sources(&files).map_err(|e| invalid(e.to_string()))?;
        Ok(LoadedPolicy {
            set,
            source: format!("{} files sent by {actor}", files.len()),
            loaded_ms: now_ms,
        })
    }

    /// Installs `loaded` (the caller holds the coordinator's writer lock).
    pub(crate) fn install(&self, loaded: Arc<LoadedPolicy>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
    }
}

fn read(dir: Option<&Path>, now_ms: u64) -> Result<LoadedPolicy, LoadError> {
    Ok(match dir {
        Some(d) => LoadedPolicy {
            set: PolicySet::load_dir(d)?,
            source: d.display().to_string(),
            loaded_ms: now_ms,
        },
        None => LoadedPolicy {
            set: PolicySet::default_set()?,
            source: "built-in default".into(),
            loaded_ms: now_ms,
        },
    })
}

/// An agent record as policy sees it.
pub(crate) fn agent_info(a: &AgentRecord) -> AgentInfo {
    AgentInfo {
        id: a.id.to_string(),
        role: a.role.clone(),
        owner: a.owner.clone(),
        labels: a.labels.clone(),
        parent: a.parent.as_ref().map(ToString::to_string),
    }
}

/// A task record as policy sees it (`hex` is its id in hex, kept by the caller).
pub(crate) fn task_info<'a>(t: &'a TaskRecord, hex: &'a str) -> TaskInfo<'a> {
    TaskInfo {
        id: hex,
        requester: &t.requester,
        intent: &t.intent,
        fields: &t.intent_fields,
    }
}

/// Most signals one request may carry, and their sizes.
const MAX_SIGNALS: usize = 32;
const MAX_SIGNAL_KEY: usize = 64;
const MAX_SIGNAL_VALUE: usize = 256;

/// Checks caller-supplied signals: bounded, with plain keys.
pub(crate) fn check_signals(signals: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if signals.len() > MAX_SIGNALS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_SIGNALS} signals are accepted, got {}",
            signals.len()
        )));
    }
    for (k, v) in signals {
        if k.is_empty()
            || k.len() > MAX_SIGNAL_KEY
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ApiError::invalid(format!(
                "signal name `{}` must be 1 to {MAX_SIGNAL_KEY} characters of [A-Za-z0-9_.-]",
                k.chars().take(MAX_SIGNAL_KEY).collect::<String>()
            )));
        }
        if v.len() > MAX_SIGNAL_VALUE {
            return Err(ApiError::invalid(format!(
                "signal `{k}` is longer than {MAX_SIGNAL_VALUE} bytes"
            )));
        }
    }
    Ok(())
}
