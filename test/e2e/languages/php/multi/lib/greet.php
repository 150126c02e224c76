<?php

function greet(string $who): string
{
    return "hello $who from a second file";
}
