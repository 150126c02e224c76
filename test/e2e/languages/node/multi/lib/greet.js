exports.greet = (who) => `hello ${who} from a second file`;
