module fizz.dev/runtime

go 1.24
