<?php
// ferry bench's null job: records which message arrived and when, and nothing else, so
// `ferry bench --php-script benches/null.php` can account for every message and measure
// latency. One short append per request (one write(2) with O_APPEND: lines of a few
// dozen bytes from concurrent children do not interleave on a local file system).
$line = sprintf(
    "{\"n\":%d,\"t\":%d,\"received_at_us\":%d}\n",
    (int) ($_POST['n'] ?? 0),
    (int) ($_POST['t'] ?? 0),
    (int) (microtime(true) * 1e6)
);
file_put_contents(getenv('FERRY_BENCH_LOG'), $line, FILE_APPEND);
