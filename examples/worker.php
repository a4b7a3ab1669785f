<?php
// An example ferry job script: php-fpm runs it once per message.
// $_POST holds the message's JSON object (body "form"); FERRY_* params say where it came from.
$entry = [
    'at' => date('c'),
    'source' => $_SERVER['FERRY_SOURCE'] ?? null,
    'attempt' => (int)($_SERVER['FERRY_ATTEMPT'] ?? 1),
    'message_id' => $_SERVER['FERRY_MESSAGE_ID'] ?? null,
    'data' => $_POST,
];
file_put_contents(getenv('FERRY_EXAMPLE_LOG') ?: '/tmp/ferry-quickstart/worker.log',
    json_encode($entry) . "\n", FILE_APPEND | LOCK_EX);

// Tell ferry what to do: 2xx acks; a 5xx retries; X-Ferry-Action overrides.
if (($_POST['fail'] ?? null) === 'yes') {
    header('X-Ferry-Action: retry');
    header('X-Ferry-Retry-After: 1');
}
echo "done\n";
