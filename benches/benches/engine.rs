//! Register plus promote one build through dev → stg → prd on the memory backends, for builds of 100,
//! 1,000 and 10,000 artifacts. The cost should grow linearly with the artifact count.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use promote_benches::fan_out;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn register_and_promote(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("register+promote 3 stages");
    group.sample_size(10);
    for artifacts in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(artifacts as u64));
        group.bench_with_input(BenchmarkId::from_parameter(artifacts), &artifacts, |b, &artifacts| {
            b.to_async(&runtime).iter_batched(
                || fan_out(artifacts, COMMIT),
                |(pipeline, request)| async move {
                    let build = pipeline.register(request, "bench").await.unwrap();
                    for stage in ["dev", "stg", "prd"] {
                        pipeline.promote(&build.id, stage, "bench").await.unwrap();
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, register_and_promote);
criterion_main!(benches);
