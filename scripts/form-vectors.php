<?php
// Produces the form-encoding test vectors with real PHP, the reference ferry's
// src/proto/form must match byte for byte (docs/SEMANTICS.md "Body `form`").
//
//   php -n scripts/form-vectors.php [tests/data/form/inputs.json] > tests/data/form/vectors.json
//       reads a JSON array of JSON texts, prints [{"json": text, "php": encoded}, ...]
//   php -n scripts/form-vectors.php --lines < inputs.txt
//       one JSON text per line in, one encoded body per line out (used by the
//       property test that compares ferry with PHP on generated inputs)
//
// Requires PHP 8.2 (Debian package php8.2-cli): the float format depends on the version.
// `-n` ignores php.ini; the settings http_build_query depends on are pinned here anyway.

if (PHP_MAJOR_VERSION !== 8 || PHP_MINOR_VERSION !== 2) {
    fwrite(STDERR, "form-vectors: PHP 8.2 required (install php8.2-cli), found " . PHP_VERSION . "\n");
    exit(2);
}
ini_set('precision', '14');
ini_set('serialize_precision', '-1');
ini_set('arg_separator.output', '&');

function encode(string $json): string {
    $value = json_decode($json, true);
    if (!is_array($value)) {
        fwrite(STDERR, "form-vectors: not a JSON object: $json\n");
        exit(1);
    }
    return http_build_query($value);
}

if (($argv[1] ?? '') === '--lines') {
    while (($line = fgets(STDIN)) !== false) {
        echo encode(rtrim($line, "\n")), "\n";
    }
    exit(0);
}

$path = $argv[1] ?? __DIR__ . '/../tests/data/form/inputs.json';
$inputs = json_decode(file_get_contents($path), true, 512, JSON_THROW_ON_ERROR);
$vectors = [];
foreach ($inputs as $json) {
    $vectors[] = ['json' => $json, 'php' => encode($json)];
}
echo json_encode($vectors, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
