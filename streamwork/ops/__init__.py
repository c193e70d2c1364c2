"""Operating an app: what the CLI and the web console call — queue statistics, dead letters,
workflow trees and the queue gauges the metrics server exports. Public, importable as
`streamwork.ops.stats`, `streamwork.ops.dead_letters`, `streamwork.ops.metrics`."""
