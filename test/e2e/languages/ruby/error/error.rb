def explode
  raise 'boom from the function' # FIZZ-E2E-THROW
end

def handler(context)
  explode
end
