// A backend for the npm `statsd` daemon: appends one JSON line per flush to `jsonl.file` in the
// daemon's config, so deploy/local/run.sh can check which metrics arrived without parsing the
// console backend's util.inspect output. Per flush: counters (value per flush), gauges (last
// value) and, per timer, the samples it got with their mean, max and 99th percentile.
'use strict';

const fs = require('fs');

exports.init = function (startupTime, config, events, logger) {
  const file = (config.jsonl || {}).file;
  if (!file) {
    logger.log('statsd-jsonl-backend: set jsonl.file in the config', 'ERROR');
    return false;
  }
  events.on('flush', function (timestamp, metrics) {
    const timers = {};
    for (const [name, data] of Object.entries(metrics.timer_data || {})) {
      timers[name] = { count: data.count || 0 };
      if (data.count) {
        timers[name].mean = data.mean;
        timers[name].upper = data.upper;
        timers[name].upper_99 = data.upper_99;
      }
    }
    const line = { timestamp, counters: metrics.counters, gauges: metrics.gauges, timers };
    fs.appendFileSync(file, JSON.stringify(line) + '\n');
  });
  return true;
};
