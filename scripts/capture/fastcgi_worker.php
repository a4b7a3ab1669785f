<?php
// Worker for scripts/capture/fastcgi.sh: what a ferry job script does, in a few modes
// chosen by QUERY_STRING so the captured answers cover what ferry must decode.
$mode = $_GET['mode'] ?? 'normal';
header('Content-Type: application/json');
switch ($mode) {
    case 'normal':
        header('X-Ferry-Action: retry');
        header('X-Ferry-Retry-After: 30');
        echo json_encode(['post' => $_POST, 'attempt' => $_SERVER['FERRY_ATTEMPT'] ?? null]);
        break;
    case 'stderr':
        // error_log() goes to the SAPI logger: FastCGI STDERR ("PHP message: ...").
        error_log('ferry capture: something went wrong');
        // php://stderr is the child's own fd 2: php-fpm does not forward it over FastCGI
        // (with catch_workers_output it lands in the master's error log).
        file_put_contents('php://stderr', "ferry capture: written to php://stderr\n");
        header('X-Ferry-Action: dead-letter');
        echo "{\"ok\":false}";
        break;
    case 'status':
        http_response_code(503);
        echo "{\"busy\":true}";
        break;
}
