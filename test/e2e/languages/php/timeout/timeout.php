<?php

// ?slow sleeps past any small function timeout; otherwise it answers at once (Fission's way:
// writing to the context's response).
function handler($context)
{
    if (isset($context['request']->getQueryParams()['slow'])) {
        sleep(30);
    }
    $context['response']->getBody()->write('awake');
}
