"""What both learners share: decoder versions and the serving pointer, the labelled images, a round's decision."""
