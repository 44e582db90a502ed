//! The tantivy index: a derived, rebuildable view of `log_records`.
//!
//! One index holds every tenant; each document carries a `tenant` term and
//! [`LogIndex::search`] and [`LogIndex::histogram`] take a [`TenantId`] and always
//! AND that term in, so no caller can run an untenanted query.
//!
//! The index's checkpoint (the highest sequence id it contains) is written in the
//! same tantivy commit as the documents (commit payload), so index contents and
//! checkpoint can never disagree: after a crash the follower resumes from the
//! checkpoint and re-reads from Postgres.
//!
//! Concurrency: the [`IndexWriter`] sits behind a mutex because only the indexer task
//! writes; searches use the [`IndexReader`], reloaded after every commit.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use model::{StoredLog, TenantId};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STRING, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader,
    TantivyDocument, Term,
};

use crate::{Result, StorageError};

/// Bump when the schema changes: an index of another version is rebuilt.
pub const SCHEMA_VERSION: u32 = 4;

/// The tokenizer of every text field: split on non-alphanumerics, lower-case, and
/// keep tokens up to 255 bytes. (tantivy's `default` drops tokens of 40+ bytes, which
/// would make hashes, long ids and tokens unsearchable.)
pub const TOKENIZER: &str = "palisade";

/// The tokenizer of the exact-value attribute and resource fields: the whole value is
/// one token, case kept; values over 4 KiB are not exact-searchable (their words
/// still are, through the `*_text` fields).
pub const EXACT_TOKENIZER: &str = "palisade_exact";

/// Longest attribute value indexed for exact matching, in bytes.
pub const MAX_EXACT_BYTES: usize = 4096;

fn exact_analyzer() -> tantivy::tokenizer::TextAnalyzer {
    use tantivy::tokenizer::{RawTokenizer, RemoveLongFilter, TextAnalyzer};
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_EXACT_BYTES + 1))
        .build()
}

fn analyzer() -> tantivy::tokenizer::TextAnalyzer {
    use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(256))
        .filter(LowerCaser)
        .build()
}

/// Field handles, public so the query compiler can build terms.
#[derive(Debug, Clone, Copy)]
pub struct IndexFields {
    pub seq: Field,
    pub tenant: Field,
    pub time: Field,
    pub severity_number: Field,
    pub severity_text: Field,
    pub body: Field,
    /// Attribute values as whole values (exact, case-sensitive).
    pub attributes: Field,
    pub resource: Field,
    /// Attribute values as words (tokenized like `body`).
    pub attributes_text: Field,
    pub resource_text: Field,
    /// Top-level IP-valued attributes as bit strings (`query::values::ip_bits`), for
    /// CIDR queries.
    pub attributes_ip: Field,
    pub resource_ip: Field,
    pub scope_name: Field,
    pub trace_id: Field,
    pub span_id: Field,
    /// `tenant/cluster/auditID` of a Kubernetes audit line: a richer stage of the same
    /// request replaces the document (see [`crate::requests`]).
    pub request_key: Field,
}

fn build_schema() -> (Schema, IndexFields) {
    let mut builder = Schema::builder();
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let text = TextOptions::default().set_indexing_options(text_indexing.clone());
    let json_text = JsonObjectOptions::default()
        .set_indexing_options(text_indexing)
        .set_expand_dots_enabled();
    let json_exact = JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(EXACT_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled();
    let fields = IndexFields {
        seq: builder.add_i64_field("seq", INDEXED | FAST),
        tenant: builder.add_text_field("tenant", STRING),
        time: builder.add_i64_field("time", INDEXED | FAST),
        severity_number: builder.add_i64_field("severity_number", INDEXED | FAST),
        severity_text: builder.add_text_field("severity_text", text.clone()),
        body: builder.add_text_field("body", text),
        attributes: builder.add_json_field("attributes", json_exact.clone()),
        resource: builder.add_json_field("resource", json_exact.clone()),
        attributes_text: builder.add_json_field("attributes_text", json_text.clone()),
        resource_text: builder.add_json_field("resource_text", json_text),
        attributes_ip: builder.add_json_field("attributes_ip", json_exact.clone()),
        resource_ip: builder.add_json_field("resource_ip", json_exact.clone()),
        scope_name: builder.add_text_field("scope_name", STRING),
        trace_id: builder.add_text_field("trace_id", STRING),
        span_id: builder.add_text_field("span_id", STRING),
        request_key: builder.add_text_field("request_key", STRING),
    };
    (builder.build(), fields)
}

/// Which leaves of an attribute map a JSON field receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every leaf, strings as strings (never reinterpreted as dates).
    Exact,
    /// Strings the analyzer splits or lower-cases; everything else is left out (the
    /// exact field has it).
    Words,
    /// Every leaf (the words-only bodies of audit records, in the words field).
    Whole,
    /// Nothing (the words-only bodies, in the exact field).
    Skip,
}

#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Map(&'a serde_json::Map<String, serde_json::Value>),
    Value(&'a serde_json::Value),
}

/// A borrowed, filtered view of a record's attributes as a tantivy JSON value.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    node: Node<'a>,
    mode: Mode,
    /// At the top of an audit record's attributes, where words-only keys live.
    root_audit: bool,
}

struct ViewArray<'a> {
    items: std::slice::Iter<'a, serde_json::Value>,
    mode: Mode,
}

impl<'a> Iterator for ViewArray<'a> {
    type Item = View<'a>;

    fn next(&mut self) -> Option<View<'a>> {
        let value = self.items.next()?;
        Some(View {
            node: Node::Value(value),
            mode: self.mode,
            root_audit: false,
        })
    }
}

struct ViewObject<'a> {
    entries: serde_json::map::Iter<'a>,
    mode: Mode,
    root_audit: bool,
}

impl<'a> Iterator for ViewObject<'a> {
    type Item = (&'a str, View<'a>);

    fn next(&mut self) -> Option<(&'a str, View<'a>)> {
        let (key, value) = self.entries.next()?;
        let bodies =
            self.root_audit && k8saudit::attr::words_only(k8saudit::attr::AUDIT_SCOPE, key);
        let mode = match (bodies, self.mode) {
            (true, Mode::Exact) => Mode::Skip,
            (true, _) => Mode::Whole,
            (false, mode) => mode,
        };
        Some((
            key.as_str(),
            View {
                node: Node::Value(value),
                mode,
                root_audit: false,
            },
        ))
    }
}

impl<'a> tantivy::schema::document::Value<'a> for View<'a> {
    type ArrayIter = ViewArray<'a>;
    type ObjectIter = ViewObject<'a>;

    fn as_value(&self) -> tantivy::schema::document::ReferenceValue<'a, Self> {
        use serde_json::Value as J;
        use tantivy::schema::document::{ReferenceValue as R, ReferenceValueLeaf as L};
        let object = |entries| {
            R::Object(ViewObject {
                entries,
                mode: self.mode,
                root_audit: self.root_audit,
            })
        };
        let value = match self.node {
            Node::Map(map) => return object(map.iter()),
            Node::Value(value) => value,
        };
        let leaves = matches!(self.mode, Mode::Exact | Mode::Whole);
        match value {
            J::Object(map) => object(map.iter()),
            J::Array(items) => R::Array(ViewArray {
                items: items.iter(),
                mode: self.mode,
            }),
            J::String(s) if leaves => L::Str(s).into(),
            J::String(s) if self.mode == Mode::Words && !model::record::is_single_token(s) => {
                L::Str(s).into()
            }
            J::Bool(b) if leaves => L::Bool(*b).into(),
            J::Number(n) if leaves => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => L::I64(i).into(),
                (None, Some(u), _) => L::U64(u).into(),
                (None, None, Some(f)) => L::F64(f).into(),
                _ => L::Null.into(),
            },
            _ => L::Null.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CommitPayload {
    schema_version: u32,
    checkpoint: i64,
}

/// A time range in microseconds since the epoch, inclusive on both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRangeMicros {
    pub from: i64,
    pub to: i64,
}

/// Position after the last hit of a page, for newest-first pagination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCursor {
    pub time: i64,
    pub seq: i64,
}

/// The order of a search page (ties on time broken by sequence id, the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// One page of search results: `(time_micros, seq)` in the requested order, and the
/// exact total.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchCursor>,
    pub total: u64,
}

pub struct LogIndex {
    dir: PathBuf,
    index: Index,
    fields: IndexFields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// The checkpoint of the commit searches see (set after the reader reloads).
    searchable: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for LogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIndex").field("dir", &self.dir).finish()
    }
}

/// Writer sizing.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub writer_threads: usize,
    pub writer_heap_bytes: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            writer_threads: 2,
            writer_heap_bytes: 128 * 1024 * 1024,
        }
    }
}

impl LogIndex {
    /// Open the index in `dir`, or create it. An index of another schema version, or
    /// one that cannot be opened, is discarded: it is rebuilt from Postgres.
    pub fn open_or_create(dir: &Path, config: &IndexConfig) -> Result<LogIndex> {
        let (schema, fields) = build_schema();
        std::fs::create_dir_all(dir)?;
        // The index holds every tenant's data: private to this user.
        std::fs::set_permissions(
            dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        )?;
        let opened = Index::open_in_dir(dir).ok().filter(|index| {
            Self::read_payload(index).is_some_and(|p| p.schema_version == SCHEMA_VERSION)
        });
        let index = match opened {
            Some(index) => index,
            None => {
                if std::fs::read_dir(dir)?.next().is_some() {
                    tracing::warn!(dir = %dir.display(), "index missing, unreadable or of an older schema; rebuilding from postgres");
                    std::fs::remove_dir_all(dir)?;
                    std::fs::create_dir_all(dir)?;
                }
                Index::create_in_dir(dir, schema)?
            }
        };
        index.tokenizers().register(TOKENIZER, analyzer());
        index
            .tokenizers()
            .register(EXACT_TOKENIZER, exact_analyzer());
        let writer =
            index.writer_with_num_threads(config.writer_threads, config.writer_heap_bytes)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searchable = Self::read_payload(&index).map_or(0, |p| p.checkpoint);
        Ok(LogIndex {
            dir: dir.to_path_buf(),
            index,
            fields,
            reader,
            writer: Mutex::new(writer),
            searchable: std::sync::atomic::AtomicI64::new(searchable),
        })
    }

    fn read_payload(index: &Index) -> Option<CommitPayload> {
        let metas = index.load_metas().ok()?;
        serde_json::from_str(metas.payload.as_deref()?).ok()
    }

    pub fn fields(&self) -> IndexFields {
        self.fields
    }

    pub fn tantivy_index(&self) -> &Index {
        &self.index
    }

    /// The analyzer of every text field, for query-time tokenization.
    pub fn analyzer(&self) -> tantivy::tokenizer::TextAnalyzer {
        analyzer()
    }

    /// The highest sequence id contained in the last commit (0 for a new index).
    pub fn checkpoint(&self) -> i64 {
        Self::read_payload(&self.index).map_or(0, |p| p.checkpoint)
    }

    /// The highest sequence id searches can see: the checkpoint of the last commit
    /// the reader has reloaded (a commit is durable a moment before it is searchable).
    pub fn searchable_checkpoint(&self) -> i64 {
        self.searchable.load(std::sync::atomic::Ordering::Acquire)
    }

    fn document(&self, log: &StoredLog) -> TantivyDocument {
        let f = &self.fields;
        let r = &log.record;
        let mut doc = TantivyDocument::default();
        doc.add_i64(f.seq, log.seq);
        doc.add_text(f.tenant, r.tenant_id.to_string());
        doc.add_i64(f.time, r.time.timestamp_micros());
        doc.add_i64(f.severity_number, i64::from(r.severity_number));
        doc.add_text(f.severity_text, &r.severity_text);
        doc.add_text(f.body, &r.body);
        // Exact values: everything but the words-only bodies of audit records. Words:
        // only the strings the analyzer splits or lower-cases (a single lower-case
        // token is found through the exact field; numbers and booleans too), except
        // under words-only keys, which are kept whole. Views over the record: nothing
        // is copied before tantivy serialises the document.
        let audit = r.scope_name == k8saudit::attr::AUDIT_SCOPE;
        for (field, map, mode, root_audit) in [
            (f.attributes, &r.attributes, Mode::Exact, audit),
            (f.attributes_text, &r.attributes, Mode::Words, audit),
            (f.resource, &*r.resource, Mode::Exact, false),
            (f.resource_text, &*r.resource, Mode::Words, false),
        ] {
            doc.add_field_value(
                field,
                View {
                    node: Node::Map(map),
                    mode,
                    root_audit,
                },
            );
        }
        use model::ip::ip_entries;
        for (field, map) in [
            (f.attributes_ip, &r.attributes),
            (f.resource_ip, &r.resource),
        ] {
            let ips = ip_entries(map);
            if !ips.is_empty() {
                let mut object = serde_json::Map::new();
                for (key, bits) in ips {
                    match object
                        .entry(key)
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                    {
                        serde_json::Value::Array(items) => items.push(bits.into()),
                        _ => unreachable!("only arrays are inserted"),
                    }
                }
                doc.add_field_value(field, &tantivy::schema::OwnedValue::from(object));
            }
        }
        if !r.scope_name.is_empty() {
            doc.add_text(f.scope_name, &r.scope_name);
        }
        if let Some(id) = &r.trace_id {
            doc.add_text(f.trace_id, id);
        }
        if let Some(id) = &r.span_id {
            doc.add_text(f.span_id, id);
        }
        if let Some(key) = k8saudit::inventory::index_key(r) {
            doc.add_text(f.request_key, key);
        }
        doc
    }

    /// Add documents (not yet visible; see [`Self::commit`]). A Kubernetes audit line
    /// marked `update` replaces its request's previous document; one marked
    /// `duplicate` is not indexed.
    pub fn add(&self, logs: &[StoredLog]) -> Result<()> {
        let writer = self.writer.lock().expect("index writer poisoned");
        for log in logs {
            let mark = log
                .record
                .attributes
                .get(k8saudit::attr::AUDIT_RECORD)
                .and_then(serde_json::Value::as_str);
            match mark {
                Some("duplicate") => continue,
                Some("update") => {
                    if let Some(key) = k8saudit::inventory::index_key(&log.record) {
                        writer.delete_term(Term::from_field_text(self.fields.request_key, &key));
                    }
                }
                _ => {}
            }
            writer.add_document(self.document(log))?;
        }
        Ok(())
    }

    /// Make everything added so far durable and searchable, recording `checkpoint`.
    pub fn commit(&self, checkpoint: i64) -> Result<()> {
        {
            let mut writer = self.writer.lock().expect("index writer poisoned");
            let mut prepared = writer.prepare_commit()?;
            let payload = CommitPayload {
                schema_version: SCHEMA_VERSION,
                checkpoint,
            };
            prepared.set_payload(&serde_json::to_string(&payload).expect("payload serialises"));
            prepared.commit()?;
        }
        self.reader.reload()?;
        self.searchable
            .fetch_max(checkpoint, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Queue deletion of every document older than `before_micros` (retention); it
    /// takes effect at the next [`Self::commit`]. Only the indexer task calls this, so
    /// a commit never covers documents beyond its checkpoint.
    pub fn delete_before(&self, before_micros: i64) -> Result<()> {
        let writer = self.writer.lock().expect("index writer poisoned");
        let query = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_i64(self.fields.time, before_micros)),
        );
        writer.delete_query(Box::new(query))?;
        Ok(())
    }

    /// Number of documents visible to searches (all tenants).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn scoped(
        &self,
        tenant: TenantId,
        query: Box<dyn Query>,
        range: TimeRangeMicros,
    ) -> BooleanQuery {
        let tenant_term = TermQuery::new(
            Term::from_field_text(self.fields.tenant, &tenant.to_string()),
            IndexRecordOption::Basic,
        );
        let time = RangeQuery::new(
            Bound::Included(Term::from_field_i64(self.fields.time, range.from)),
            Bound::Included(Term::from_field_i64(self.fields.time, range.to)),
        );
        BooleanQuery::new(vec![
            (Occur::Must, Box::new(tenant_term)),
            (Occur::Must, Box::new(time)),
            (Occur::Must, query),
        ])
    }

    /// A page of `query` for one tenant in `order`, after `cursor` (the last hit of the
    /// previous page), plus the exact total.
    pub fn search(
        &self,
        tenant: TenantId,
        query: Box<dyn Query>,
        range: TimeRangeMicros,
        cursor: Option<SearchCursor>,
        limit: usize,
        order: Order,
    ) -> Result<SearchPage> {
        let searcher = self.reader.searcher();
        let scoped = self.scoped(tenant, query, range);
        let total = searcher.search(&scoped, &Count)? as u64;
        let paged: Box<dyn Query> = match cursor {
            None => Box::new(scoped),
            Some(c) => {
                // Newest first: (time, seq) < (c.time, c.seq), strictly older or the same
                // time and a lower seq. Oldest first: the mirror image.
                let before = |field, value| match order {
                    Order::Newest => RangeQuery::new(
                        Bound::Unbounded,
                        Bound::Excluded(Term::from_field_i64(field, value)),
                    ),
                    Order::Oldest => RangeQuery::new(
                        Bound::Excluded(Term::from_field_i64(field, value)),
                        Bound::Unbounded,
                    ),
                };
                let older = before(self.fields.time, c.time);
                let same_time = BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(
                            Term::from_field_i64(self.fields.time, c.time),
                            IndexRecordOption::Basic,
                        )) as Box<dyn Query>,
                    ),
                    (Occur::Must, Box::new(before(self.fields.seq, c.seq))),
                ]);
                let before_cursor = BooleanQuery::new(vec![
                    (Occur::Should, Box::new(older) as Box<dyn Query>),
                    (Occur::Should, Box::new(same_time)),
                ]);
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(scoped) as Box<dyn Query>),
                    (Occur::Must, Box::new(before_cursor)),
                ]))
            }
        };
        let sign: i64 = if order == Order::Oldest { -1 } else { 1 };
        let docs = Self::top_by_time(&searcher, paged.as_ref(), limit.max(1), sign)?;
        let hits = if limit == 0 {
            Vec::new()
        } else {
            docs.into_iter()
                .map(|(time, seq)| SearchCursor {
                    time: sign * time,
                    seq: sign * seq,
                })
                .collect()
        };
        Ok(SearchPage { hits, total })
    }

    /// The `limit` best matches of `query` by `(sign·time, sign·seq)` (newest first for
    /// sign 1, oldest first for -1), as keys. Segments are visited best-bound first (a
    /// segment's bound is its newest time, or minus its oldest) and a segment whose bound
    /// cannot beat the current `limit`-th key is skipped with every later one: segments
    /// are written in ingest order, which is close to time order, so a broad query's
    /// first page reads the newest segments and stops — instead of ranking every match.
    fn top_by_time(
        searcher: &tantivy::Searcher,
        query: &dyn Query,
        limit: usize,
        sign: i64,
    ) -> Result<Vec<(i64, i64)>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
            searcher,
        ))?;
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        for reader in searcher.segment_readers() {
            let time = reader.fast_fields().i64("time")?.first_or_default_col(0);
            let seq = reader.fast_fields().i64("seq")?.first_or_default_col(0);
            let bound = if sign > 0 {
                time.max_value()
            } else {
                -time.min_value()
            };
            segments.push((bound, reader, time, seq));
        }
        segments.sort_by_key(|s| Reverse(s.0));
        // A min-heap of the best keys so far.
        let mut heap: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::with_capacity(limit + 1);
        for (bound, reader, time, seq) in segments {
            if heap.len() == limit && heap.peek().is_some_and(|Reverse(worst)| bound < worst.0) {
                break;
            }
            let alive = reader.alive_bitset();
            weight.for_each_no_score(reader, &mut |docs: &[DocId]| {
                for &doc in docs {
                    if alive.is_some_and(|a| !a.is_alive(doc)) {
                        continue;
                    }
                    let key = (sign * time.get_val(doc), sign * seq.get_val(doc));
                    if heap.len() < limit {
                        heap.push(Reverse(key));
                    } else if heap.peek().is_some_and(|Reverse(worst)| key > *worst) {
                        heap.pop();
                        heap.push(Reverse(key));
                    }
                }
            })?;
        }
        let mut keys: Vec<(i64, i64)> = heap.into_iter().map(|Reverse(k)| k).collect();
        keys.sort_by(|a, b| b.cmp(a));
        Ok(keys)
    }

    /// Counts of `query` matches per time bucket over `range` (equal-width buckets).
    pub fn histogram(
        &self,
        tenant: TenantId,
        query: Box<dyn Query>,
        range: TimeRangeMicros,
        buckets: usize,
    ) -> Result<Vec<u64>> {
        if buckets == 0 {
            return Err(StorageError::Invalid("buckets must be at least 1".into()));
        }
        let searcher = self.reader.searcher();
        let scoped = self.scoped(tenant, query, range);
        let collector = HistogramCollector {
            from: range.from,
            width: bucket_width(range, buckets),
            buckets,
        };
        Ok(searcher.search(&scoped, &collector)?)
    }
}

/// Width in microseconds of each of `buckets` equal buckets covering `range`.
pub fn bucket_width(range: TimeRangeMicros, buckets: usize) -> i64 {
    let span = (range.to - range.from).max(0) + 1;
    (span + buckets as i64 - 1) / buckets as i64
}

struct HistogramCollector {
    from: i64,
    width: i64,
    buckets: usize,
}

struct HistogramSegment {
    from: i64,
    width: i64,
    counts: Vec<u64>,
    time: std::sync::Arc<dyn tantivy::columnar::ColumnValues<i64>>,
}

impl Collector for HistogramCollector {
    type Fruit = Vec<u64>;
    type Child = HistogramSegment;

    fn for_segment(
        &self,
        _ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<HistogramSegment> {
        Ok(HistogramSegment {
            from: self.from,
            width: self.width,
            counts: vec![0; self.buckets],
            time: segment.fast_fields().i64("time")?.first_or_default_col(0),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut total = vec![0; self.buckets];
        for fruit in fruits {
            for (slot, count) in total.iter_mut().zip(fruit) {
                *slot += count;
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for HistogramSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let offset = self.time.get_val(doc) - self.from;
        if offset < 0 {
            return;
        }
        let bucket = (offset / self.width) as usize;
        if let Some(slot) = self.counts.get_mut(bucket) {
            *slot += 1;
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}
