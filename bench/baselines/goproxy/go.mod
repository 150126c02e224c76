module fizz.dev/bench/goproxy

go 1.22
