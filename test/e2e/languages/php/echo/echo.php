<?php

// Answers the POSTed JSON body back as JSON (a returned array is answered as JSON).
function handler($context)
{
    return json_decode((string) $context['request']->getBody(), true, 512, JSON_THROW_ON_ERROR);
}
