from spaceevo.cli import main

main()
