require_relative 'lib/greet'

def handler(context)
  Greet.greet('fizz')
end
