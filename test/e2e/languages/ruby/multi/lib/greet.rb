module Greet
  def self.greet(who)
    "hello #{who} from a second file"
  end
end
