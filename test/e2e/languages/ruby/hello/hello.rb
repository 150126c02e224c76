def handler
  "Hello, world!\n"
end
