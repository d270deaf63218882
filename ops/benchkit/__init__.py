"""The Stock Flow benchmark orchestrator (ops/bench runs it through ops/bench.py).

- cli: the arguments ops/bench passes, and the exit status;
- core: Bench, put together from the parts below, and the run from start to report;
- scenarios: what each scenario loads, and the order they run in;
- world: the locations, request bodies and URLs the scenarios use;
- driver: running the load generators, a write run and a read run, sf-floor, redis-benchmark;
- loadgen: oha and wrk, their command lines and their output;
- mixed: the mixed scenario's own load generator (orders, cancels, fulfilment steps, POS sales);
- checkout: the checkout scenario's own load generator (holds, then conversion, release or expiry);
- checks: the invariants after each write scenario, and the reconciliation;
- clients: HTTP to the service, SQL, redis-cli, the consumer's backlog;
- measure: CPU per process, the service's RSS, the machine's facts;
- targets: the targets and the notes on what stands out;
- report, charts and report.md.tmpl: report.md, report.json and the charts.
- scale and scale_report: `ops/bench --scale retail`, the costs against catalogue size, run on
  the parts above, and its own report.
"""
