<?php

function explode_now()
{
    throw new RuntimeException('boom from the function'); // FIZZ-E2E-THROW
}

function handler($context)
{
    explode_now();
}
