from embspace.cli import main

main()
