//! The article store: loaded once at start-up, read-only afterwards.
//!
//! Each reader's list is serialized once, at load time, so `GET /articles` only looks up
//! prepared bytes after the token is verified.

use std::collections::HashMap;
use std::path::Path;

use access_token::AccessClaims;
use actix_web::web::Bytes;
use serde::{Deserialize, Serialize};

/// The sample served when `API_ARTICLES_FILE` is unset: a few articles each for alice, bob
/// and carol.
pub const SAMPLE_JSON: &str = include_str!("sample_articles.json");

/// The role that reads every article.
pub const ADMIN_ROLE: &str = "admin";

/// One article, as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Article {
    /// Unique id.
    pub id: u64,
    /// The author's username (lowercase, like every username).
    pub author: String,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
}

/// Why the articles could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArticlesError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a JSON array of articles.
    #[error("not a JSON array of {{id, author, title, body}}: {0}")]
    Json(String),
    /// Two articles with one id.
    #[error("article id {0} appears twice")]
    DuplicateId(u64),
}

/// Every article, indexed by id and by author, with each list pre-serialized.
#[derive(Debug, Clone)]
pub struct Articles {
    by_id: HashMap<u64, Article>,
    /// author → JSON array of that author's articles, in id order.
    json_by_author: HashMap<String, Bytes>,
    /// Every article, in id order (what an admin reads).
    json_all: Bytes,
}

impl Articles {
    /// Loads `path` if given, else the bundled sample.
    pub fn load(path: Option<&Path>) -> Result<Self, ArticlesError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ArticlesError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::from_json(&text)
            }
            None => Self::from_json(SAMPLE_JSON),
        }
    }

    /// Parses a JSON array of articles.
    pub fn from_json(text: &str) -> Result<Self, ArticlesError> {
        let mut list: Vec<Article> =
            serde_json::from_str(text).map_err(|e| ArticlesError::Json(e.to_string()))?;
        list.sort_by_key(|a| a.id);
        let mut by_id = HashMap::with_capacity(list.len());
        let mut by_author: HashMap<String, Vec<&Article>> = HashMap::new();
        for article in &mut list {
            // Usernames are case-insensitive and stored lowercased by the auth server.
            article.author = article.author.to_lowercase();
        }
        for article in &list {
            if by_id.insert(article.id, article.clone()).is_some() {
                return Err(ArticlesError::DuplicateId(article.id));
            }
            by_author.entry(article.author.clone()).or_default().push(article);
        }
        let json_by_author = by_author
            .into_iter()
            .map(|(author, articles)| Ok((author, to_json(&articles)?)))
            .collect::<Result<_, ArticlesError>>()?;
        let json_all = to_json(&list)?;
        Ok(Self { by_id, json_by_author, json_all })
    }

    /// Number of articles.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The JSON array of the articles `reader` may read: their own, or all for an admin.
    pub fn list_json(&self, reader: &AccessClaims) -> Bytes {
        if reader.has_role(ADMIN_ROLE) {
            return self.json_all.clone();
        }
        self.json_by_author
            .get(reader.preferred_username.as_str())
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"[]"))
    }

    /// Article `id` if `reader` may read it; `None` when absent **or** someone else's (so an
    /// id is no oracle for what others wrote).
    pub fn get(&self, id: u64, reader: &AccessClaims) -> Option<&Article> {
        self.by_id
            .get(&id)
            .filter(|a| reader.has_role(ADMIN_ROLE) || a.author == reader.preferred_username)
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, ArticlesError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| ArticlesError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(username: &str, roles: &[&str]) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            preferred_username: username.into(),
            name: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            scope: "articles:read".into(),
            iat: 0,
            nbf: 0,
            exp: 0,
            jti: String::new(),
            sid: String::new(),
        }
    }

    #[test]
    fn the_sample_has_articles_for_alice_bob_and_carol() {
        let store = Articles::load(None).unwrap();
        for who in ["alice", "bob", "carol"] {
            let list: Vec<Article> =
                serde_json::from_slice(&store.list_json(&reader(who, &["user"]))).unwrap();
            assert!(list.len() >= 2, "{who}");
            assert!(list.iter().all(|a| a.author == who));
        }
    }

    #[test]
    fn an_admin_reads_everything_and_a_stranger_nothing() {
        let store = Articles::load(None).unwrap();
        let all: Vec<Article> =
            serde_json::from_slice(&store.list_json(&reader("root", &["admin"]))).unwrap();
        assert_eq!(all.len(), store.len());
        assert_eq!(&store.list_json(&reader("dave", &["user"]))[..], b"[]");
    }

    #[test]
    fn someone_elses_article_is_not_found() {
        let store = Articles::load(None).unwrap();
        assert!(store.get(1, &reader("alice", &[])).is_some());
        assert!(store.get(1, &reader("bob", &[])).is_none());
        assert!(store.get(999, &reader("alice", &[])).is_none());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let json = r#"[{"id":1,"author":"a","title":"t","body":"b"},{"id":1,"author":"b","title":"t","body":"b"}]"#;
        assert!(matches!(Articles::from_json(json), Err(ArticlesError::DuplicateId(1))));
    }
}
