<?php

require_once __DIR__ . '/lib/greet.php';

function handler($context)
{
    return greet('fizz');
}
