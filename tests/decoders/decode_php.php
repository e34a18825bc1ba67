<?php
// The differential test's PHP decoder (tests/decoders/): parse_str, which is
// how PHP fills $_GET from a query and $_POST from a form body
// (php_default_treat_data, php_register_variable_ex). It reads bytes: PHP
// ignores a form body's charset.
//
// In:  one case per line, {"id": n, "where": ..., "content_type": ..., "data": "<base64>"}.
// Out: one line per case, {"id": n, "r": {"php": [[name, value], ...]}}: every
//      top-level key parse_str yields, an array counting as its key. For an array
//      the value is first what JavaScript's String() makes of it (['x'] is 'x';
//      an application that takes the first element or coerces the array reads
//      that), then each string inside it, each as its own pair.
// Bytes that are not UTF-8 are printed as U+FFFD (a name that holds them is
// not an ASCII name, and a value that holds them is not a judged value).

function js_string($v) {
    if (!is_array($v)) {
        return (string)$v;
    }
    if (array_is_list($v)) {
        return implode(',', array_map('js_string', $v));
    }
    return '[object Object]';
}

function leaves($v, &$out) {
    foreach ($v as $x) {
        if (is_array($x)) {
            leaves($x, $out);
        } else {
            $out[] = (string)$x;
        }
    }
}

$flags = JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES;
$in = fopen('php://stdin', 'r');
$out = fopen('php://stdout', 'w');
while (($line = fgets($in)) !== false) {
    $line = trim($line);
    if ($line === '') {
        continue;
    }
    $case = json_decode($line, true);
    $data = base64_decode($case['data'], true);
    $vars = [];
    parse_str($data, $vars);
    $pairs = [];
    foreach ($vars as $k => $v) {
        $k = (string)$k;
        $pairs[] = [$k, js_string($v)];
        if (is_array($v)) {
            $l = [];
            leaves($v, $l);
            foreach ($l as $x) {
                $pairs[] = [$k, $x];
            }
        }
    }
    fwrite($out, json_encode(['id' => $case['id'], 'r' => ['php' => $pairs]], $flags) . "\n");
}
