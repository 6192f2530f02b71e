//! Running a line's DataFusion plans on an Apache DataFusion Ballista cluster
//! (`--engine ballista://HOST:PORT`), and the scheduler and executor processes that carry
//! Valtava's own functions (`valtava cluster scheduler|executor`).
//!
//! The line file does not change. Sources are still parsed by their plugins where the run
//! is started (a parser is not a DataFusion plan); each step's plan is sent to the cluster.
//! Plans must be serialisable, so before a step runs, every table it scans that is not
//! already a file table (the stream of the step before it, a code set) is written once as
//! Parquet under `work/<run id>/` in the store and the scan is pointed at that file. The
//! scheduler and executors therefore need to reach the store: an `s3://` store (read with
//! the credentials and endpoint of their environment), or a folder they all see at the
//! same path. The work files are removed when the run ends.
//!
//! The cluster never sees a clear identity code and never holds the pseudonymisation key.
//! Which steps go to the cluster is decided step by step from the personal-data lineage of
//! the plans ([`crate::plan::personal`]): a source, a step any of whose inputs holds a clear
//! personal value, and a step that pseudonymises run where the run starts; only the steps
//! after pseudonymisation (aggregates, SQL, publish) go to the cluster, so every work file
//! holds pseudonyms at most. Valtava's functions are registered on the scheduler and every
//! executor (`VALTAVA_MEMORY_LIMIT` sizes an executor's memory pool) with `pseudonym`
//! keyless: it fails there. Anyone who reaches the scheduler can run plans, but cannot
//! compute pseudonyms, so published and quarantined pseudonyms cannot be reversed through
//! it. Before the first step, the run checks that the cluster answers and holds no key.

use std::collections::BTreeMap;
use std::sync::Arc;

use ballista_core::extension::SessionStateExt;
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{TableProvider, provider_as_source, source_as_provider};
use datafusion::execution::SessionState;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use url::Url;

use crate::run::RunIoError;
use crate::store::Store;

/// A cluster the run's plans are sent to.
#[derive(Clone)]
pub struct Cluster {
    /// The session whose query planner submits plans to the scheduler.
    pub state: SessionState,
    /// `file:///…/` or `s3://bucket/prefix/`: the store as the cluster names it.
    root: String,
    /// Where this run's work files go, inside the store.
    work: String,
}

/// `ballista://HOST:PORT` → the scheduler's `HOST:PORT`.
pub fn scheduler_address(engine: &str) -> Result<String, RunIoError> {
    let rest = engine
        .strip_prefix("ballista://")
        .ok_or_else(|| RunIoError::UnknownEngine {
            engine: engine.to_string(),
        })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "50050"));
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(RunIoError::NoScheduler {
            engine: engine.to_string(),
        });
    }
    Ok(format!("{host}:{port}"))
}

/// The store's root as a URL every process of the cluster can open.
fn root_url(store: &Store) -> Result<String, RunIoError> {
    let url = store.url.as_str();
    match url.split_once("://") {
        Some(("s3" | "s3a", rest)) => Ok(format!("s3://{}/", rest.trim_end_matches('/'))),
        Some(("file", rest)) => Ok(format!("file://{}/", rest.trim_end_matches('/'))),
        Some((scheme, _)) => Err(RunIoError::StoreScheme {
            scheme: scheme.to_string(),
        }),
        None => {
            let abs = std::fs::canonicalize(url.trim_end_matches('/')).map_err(|source| {
                RunIoError::StoreFolder {
                    url: url.to_string(),
                    source,
                }
            })?;
            Ok(format!("file://{}/", abs.display()))
        }
    }
}

impl Cluster {
    /// Connects a session to the scheduler at `engine` (`ballista://HOST:PORT`).
    pub fn connect(
        engine: &str,
        local: &SessionState,
        store: &Store,
        run_id: &str,
    ) -> Result<Cluster, RunIoError> {
        use datafusion::execution::FunctionRegistry;
        let address = scheduler_address(engine)?;
        let session = |source: datafusion::error::DataFusionError| RunIoError::Session {
            engine: engine.to_string(),
            source,
        };
        let mut state = local
            .clone()
            .upgrade_for_ballista(format!("http://{address}"))
            .map_err(session)?;
        // The upgrade keeps only Ballista's own functions.
        for (name, f) in local.scalar_functions() {
            if state.udf(name).is_err() {
                state.register_udf(f.clone()).map_err(session)?;
            }
        }
        for (name, f) in local.aggregate_functions() {
            if state.udaf(name).is_err() {
                state.register_udaf(f.clone()).map_err(session)?;
            }
        }
        Ok(Cluster {
            state,
            root: root_url(store)?,
            work: crate::store::layout::work(run_id),
        })
    }

    /// Checks that the cluster answers and cannot pseudonymise: a cluster that holds a key
    /// (an older version, or one started by hand with a key) is a pseudonym oracle for
    /// anyone who reaches it, and is refused.
    pub async fn check(&self) -> Result<(), RunIoError> {
        let sql = "SELECT pseudonym(column1) AS p FROM (VALUES ('valtava-key-check'))";
        let ctx = SessionContext::new_with_state(self.state.clone());
        let answer = async {
            ctx.sql(sql).await?.collect().await?;
            Ok::<_, datafusion::error::DataFusionError>(())
        }
        .await;
        match answer {
            Ok(()) => Err(RunIoError::HoldsKey),
            Err(e) if e.to_string().contains(crate::functions::NO_KEY) => Ok(()),
            Err(source) => Err(RunIoError::NoAnswer { source }),
        }
    }

    /// Points every scan of `plan` that the cluster cannot read at a Parquet copy of the
    /// table in the store, written here (each table once, so a table scanned twice is read
    /// from its source once).
    pub async fn prepare(
        &self,
        step: &str,
        plan: LogicalPlan,
        local: &SessionState,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<LogicalPlan, RunIoError> {
        let mut tables: BTreeMap<String, Arc<dyn TableProvider>> = BTreeMap::new();
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::TableScan(t) = p
                && let Ok(provider) = source_as_provider(&t.source)
                && (provider.as_ref() as &dyn std::any::Any)
                    .downcast_ref::<ListingTable>()
                    .is_none()
            {
                tables.insert(t.table_name.to_string(), provider);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut copies: BTreeMap<String, Arc<dyn TableProvider>> = BTreeMap::new();
        for (i, (name, provider)) in tables.into_iter().enumerate() {
            let file = format!("{}/{step}/{i}.parquet", self.work);
            write_parquet(&provider, local, store, &file)
                .await
                .map_err(|e| RunIoError::Copy {
                    table: name.clone(),
                    step: step.to_string(),
                    source: Box::new(e),
                })?;
            let url = ListingTableUrl::parse(format!("{}{file}", self.root))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(provider.schema());
            let table = ListingTable::try_new(config)?;
            copies.insert(name, Arc::new(table));
        }
        plan.transform_up_with_subqueries(|p| match p {
            LogicalPlan::TableScan(mut t) => match copies.get(&t.table_name.to_string()) {
                Some(copy) => {
                    t.source = provider_as_source(copy.clone());
                    Ok(Transformed::yes(LogicalPlan::TableScan(t)))
                }
                None => Ok(Transformed::no(LogicalPlan::TableScan(t))),
            },
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
        .map_err(RunIoError::from)
    }

    /// Removes this run's work files.
    /// Keeps the run's work folder marked as in use: writes `work/<run id>/_lease` now and
    /// again every minute until the returned task is aborted. A folder whose lease is older
    /// than [`crate::run::gc::WORK_LEASE_STALE`] belongs to a run that was killed, and the next
    /// run removes it. The renewal stops when the lease is dropped, whichever way the run
    /// ends.
    pub fn lease(&self, store: &Arc<dyn ObjectStore>) -> Lease {
        let store = store.clone();
        let path = Path::from(format!("{}/{}", self.work, crate::run::gc::WORK_LEASE));
        Lease(tokio::spawn(async move {
            loop {
                let _ = store
                    .put(&path, PutPayload::from_static(b"running\n"))
                    .await;
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        }))
    }

    pub async fn clean(&self, store: &Arc<dyn ObjectStore>) {
        let prefix = Path::from(self.work.as_str());
        let mut list = store.list(Some(&prefix));
        while let Some(Ok(meta)) = list.next().await {
            let _ = store.delete(&meta.location).await;
        }
    }
}

/// The renewal of a run's work lease; stops when dropped.
pub struct Lease(tokio::task::JoinHandle<()>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes a table as one Parquet object.
async fn write_parquet(
    provider: &Arc<dyn TableProvider>,
    state: &SessionState,
    store: &Arc<dyn ObjectStore>,
    path: &str,
) -> Result<(), RunIoError> {
    let plan = provider.scan(state, None, &[], None).await?;
    let mut stream = execute_stream(plan, state.task_ctx())?;
    let writer = BufWriter::new(store.clone(), Path::from(path));
    let mut w = AsyncArrowWriter::try_new(
        writer,
        provider.schema(),
        Some(crate::publish::writer_properties()),
    )?;
    while let Some(batch) = stream.next().await {
        w.write(&batch?).await?;
    }
    w.close().await?;
    Ok(())
}

/// Object stores by URL, opening `s3://bucket` on first use from the environment (as
/// `--store s3://…` does), so executors read any bucket their credentials allow.
#[derive(Debug, Default)]
struct Stores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(s) = self.known.get_store(url) {
            return Ok(s);
        }
        match (url.scheme(), url.host_str()) {
            ("s3" | "s3a", Some(bucket)) => {
                let store = crate::store::open(&format!("s3://{bucket}"))
                    .map_err(|e| datafusion::error::DataFusionError::Configuration(e.to_string()))?
                    .inner;
                let root = Url::parse(&format!("{}://{bucket}", url.scheme()))
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                self.known.register_store(&root, store.clone());
                Ok(store)
            }
            _ => self.known.get_store(url),
        }
    }
}

/// The runtime of a scheduler or executor session: S3 stores from the environment. (An
/// executor puts its own memory pool on it, see `executor`.)
fn runtime(temp: Option<&str>) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(Stores::default()));
    if let Some(dir) = temp {
        b = b.with_temp_file_path(dir);
    }
    b.build_arc()
}

/// Valtava's functions with DataFusion's and Ballista's.
fn functions() -> BallistaFunctionRegistry {
    BallistaFunctionRegistry::from(&crate::plan::session(None, 1).state())
}

/// Runs a Ballista scheduler with Valtava's functions until it is stopped.
pub async fn scheduler(bind: std::net::SocketAddr) -> Result<(), RunIoError> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let udfs = crate::functions::udfs(None);
    let udafs = crate::functions::udafs();
    let builder = move |config: SessionConfig| {
        use datafusion::execution::FunctionRegistry;
        let mut state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime(None)?)
            .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
            .build();
        for f in &udfs {
            state
                .register_udf(Arc::new(f.clone()))
                .map_err(|e| e.context("registering Valtava's functions"))?;
        }
        for f in &udafs {
            state
                .register_udaf(Arc::new(f.clone()))
                .map_err(|e| e.context("registering Valtava's functions"))?;
        }
        Ok(state)
    };
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        override_session_builder: Some(Arc::new(builder)),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| RunIoError::Ballista(e.into()))?;
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| RunIoError::Ballista(e.into()))
}

/// What an executor needs to know.
pub struct ExecutorOptions {
    /// The scheduler's `HOST:PORT`.
    pub scheduler: String,
    /// Where the executor listens for results (Arrow Flight); its gRPC port is the next.
    pub bind: std::net::SocketAddr,
    /// The address the scheduler and clients reach it at (default: the bind address).
    pub external_host: Option<String>,
    /// Concurrent tasks (default: the cores).
    pub tasks: Option<usize>,
    /// Shuffle files (default: a temporary folder).
    pub work_dir: Option<String>,
    /// The memory pool the executor shares among its tasks (bytes); `None`: Ballista takes
    /// a share of the host's memory.
    pub memory_limit: Option<usize>,
}

/// Ballista's execution engine, with the operator metrics of a task left out of its report.
/// Ballista 55's scheduler compares each task's metrics with its stage's operator by
/// operator and, when a stage's tasks report different numbers (seen with the plans of
/// `count(DISTINCT …)` under a cube), fails the status update and the job never finishes.
/// The metrics only feed Ballista's own UI; a task's results, runtime statistics and
/// window states are passed on unchanged.
struct WithoutOperatorMetrics(ballista_executor::execution_engine::DefaultExecutionEngine);

impl ballista_executor::execution_engine::ExecutionEngine for WithoutOperatorMetrics {
    fn create_query_stage_exec(
        &self,
        job_id: ballista_core::JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> datafusion::error::Result<Arc<dyn ballista_executor::execution_engine::QueryStageExecutor>>
    {
        let inner = self.0.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(StageWithoutMetrics(inner)))
    }
}

struct StageWithoutMetrics(Arc<dyn ballista_executor::execution_engine::QueryStageExecutor>);

impl std::fmt::Debug for StageWithoutMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for StageWithoutMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

#[async_trait::async_trait]
impl ballista_executor::execution_engine::QueryStageExecutor for StageWithoutMetrics {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::error::Result<Vec<ballista_core::serde::protobuf::ShuffleWritePartition>> {
        self.0.execute_query_stage(task_id, context).await
    }

    fn collect_plan_metrics(&self) -> Vec<datafusion::physical_plan::metrics::MetricsSet> {
        Vec::new()
    }

    fn collect_runtime_stats_reports(
        &self,
    ) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.0.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(
        &self,
    ) -> datafusion::error::Result<Vec<ballista_core::serde::protobuf::WindowStateReport>> {
        self.0.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<ballista_core::serde::protobuf::TaskColumnStats> {
        self.0.collect_column_stats()
    }
}

/// Runs a Ballista executor with Valtava's functions until it is stopped.
pub async fn executor(opts: ExecutorOptions) -> Result<(), RunIoError> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let (host, port) = opts
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| RunIoError::SchedulerAddress {
            scheduler: opts.scheduler.clone(),
        })?;
    let work_dir = opts.work_dir.clone();
    let temp = work_dir.clone();
    let mut config = ExecutorProcessConfig {
        bind_host: opts.bind.ip().to_string(),
        external_host: opts.external_host.clone(),
        port: opts.bind.port(),
        grpc_port: opts.bind.port().saturating_add(1),
        scheduler_host: host,
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 30,
        work_dir,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(functions())),
        override_execution_engine: Some(Arc::new(WithoutOperatorMetrics(
            ballista_executor::execution_engine::DefaultExecutionEngine::new(),
        ))),
        override_runtime_producer: Some(Arc::new(move |_| runtime(temp.as_deref()))),
        // The executor shares its pool among its tasks (`VALTAVA_MEMORY_LIMIT` on the
        // command line).
        memory_pool_size: opts.memory_limit.map(|b| b as u64),
        ..Default::default()
    };
    if let Some(n) = opts.tasks {
        config.vcores = n.max(1);
    }
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| RunIoError::Ballista(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_urls_name_a_scheduler() {
        assert_eq!(
            scheduler_address("ballista://10.0.0.5:50050").unwrap(),
            "10.0.0.5:50050"
        );
        assert_eq!(
            scheduler_address("ballista://scheduler").unwrap(),
            "scheduler:50050"
        );
        assert!(scheduler_address("ballista://:50050").is_err());
        assert!(scheduler_address("ballista://h:port").is_err());
        assert!(scheduler_address("spark://h:7077").is_err());
    }

    #[test]
    fn a_memory_store_cannot_be_shared_with_a_cluster() {
        let s = crate::store::open("memory://").unwrap();
        assert!(root_url(&s).unwrap_err().to_string().contains("memory://"));
        let s3 = Store {
            url: "s3://b/tuotanto".into(),
            inner: s.inner.clone(),
            root: None,
        };
        assert_eq!(root_url(&s3).unwrap(), "s3://b/tuotanto/");
    }
}
