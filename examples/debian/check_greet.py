"""Unit tests of greet.py, run inside the Debian image by examples/debian/greet.spec."""

import unittest

from greet import greeting


class GreetingTest(unittest.TestCase):
    def test_names_the_person(self) -> None:
        self.assertEqual(greeting("obuilder"), "hello, obuilder!")

    def test_defaults_to_the_world(self) -> None:
        self.assertEqual(greeting(""), "hello, world!")


if __name__ == "__main__":
    unittest.main()
